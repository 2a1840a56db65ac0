"""RELION STAR files on ``starfile``: reading tables (with clear errors) and writing them atomically."""

from __future__ import annotations

import codecs
import os
import warnings
from pathlib import Path

import pandas as pd
import starfile

from cryoai.errors import InputError
from cryoai.io.atomic import atomic_path


def write_star(path: str | os.PathLike, blocks: dict[str, pd.DataFrame]) -> None:
    """Write data blocks (``{"optics": df, "particles": df}`` → ``data_optics``, ``data_particles``)
    atomically: to a temporary file, renamed on success."""
    with atomic_path(path) as tmp:
        starfile.write(blocks, tmp, overwrite=True)


def read_star(path: str | os.PathLike) -> dict[str, pd.DataFrame | dict]:
    """Read every data block of a STAR file → ``{block name: table}`` (``data_optics`` → "optics").

    Loop blocks come back as DataFrames, key-value blocks as dicts. Raises InputError naming
    the file when it is missing, not text, not STAR, or holds no data table.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such STAR file; check the path")
    with open(path, "rb") as f:
        head = f.read(4096)
    try:
        if b"\0" in head:
            raise UnicodeDecodeError("utf-8", head, 0, 1, "NUL byte")
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # tolerates a cut last char
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a STAR file (binary content); give a RELION particle STAR file") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks = starfile.read(path, always_dict=True)
    except Exception as e:  # starfile raises assorted types on malformed text
        reason = " ".join(str(e).split())[:200]
        raise InputError(f"{path}: not a readable STAR file ({type(e).__name__}: {reason}); "
                         f"check that it is a RELION STAR file") from None
    if not any(isinstance(b, pd.DataFrame) and len(b.columns) for b in blocks.values()):
        raise InputError(f"{path}: no data table (loop_) found, the STAR file is empty or not STAR; "
                         f"give a RELION particle STAR file")
    return blocks
