"""RELION STAR files: reading tables (with clear errors) and writing them atomically.

Both directions stream. ``starfile`` (0.5) holds the file as lines, joined text, a quoted copy
and a cell-by-cell object copy at once (about 1 GB to read and more to write 10⁶ particles),
so loops are read by pandas' C parser straight from the file, and written in chunks of rows,
with ``starfile``'s output format; files the fast path does not cover (single quotes) fall back
to ``starfile.read``.
"""

from __future__ import annotations

import codecs
import csv
import os
import shlex
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import starfile
from starfile.parser import numericise

from cryoai.errors import InputError
from cryoai.io.atomic import atomic_path


def write_star(path: str | os.PathLike, blocks: dict[str, pd.DataFrame]) -> None:
    """Write data blocks (``{"optics": df, "particles": df}`` → ``data_optics``, ``data_particles``)
    atomically: to a temporary file, renamed on success."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        now = datetime.now()
        f.write(f"# Created by cryoai at {now:%H:%M:%S} on {now:%d/%m/%Y}\n\n\n")
        for name, block in blocks.items():
            if isinstance(block, dict):
                f.write(f"data_{name}\n\n")
                f.writelines(f"_{k}\t\t\t{_quote(v)}\n" for k, v in block.items())
            else:
                f.write(f"data_{name}\n\nloop_\n")
                f.writelines(f"_{c} #{i}\n" for i, c in enumerate(block.columns, 1))
                for start in range(0, len(block), WRITE_CHUNK):
                    chunk = block.iloc[start:start + WRITE_CHUNK]
                    text = [c for c in chunk.columns if not pd.api.types.is_numeric_dtype(chunk[c])]
                    if text:
                        chunk = chunk.assign(**{c: chunk[c].map(_quote) for c in text})
                    chunk.to_csv(f, sep="\t", header=False, index=False, float_format="%.6f", na_rep="<NA>",
                                 quoting=csv.QUOTE_NONE, lineterminator="\n")
            f.write("\n\n")


WRITE_CHUNK = 65536  # rows formatted at a time


def _quote(x):
    """As ``starfile``: strings with a space, or empty, in double quotes."""
    return f'"{x}"' if isinstance(x, str) and (" " in x or not x) else x


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
            blocks = _read_fast(path)
            if blocks is None:
                blocks = starfile.read(path, always_dict=True)
    except Exception as e:  # starfile raises assorted types on malformed text
        reason = " ".join(str(e).split())[:200]
        raise InputError(f"{path}: not a readable STAR file ({type(e).__name__}: {reason}); "
                         f"check that it is a RELION STAR file") from None
    if not any(isinstance(b, pd.DataFrame) and len(b.columns) for b in blocks.values()):
        raise InputError(f"{path}: no data table (loop_) found, the STAR file is empty or not STAR; "
                         f"give a RELION particle STAR file")
    return blocks


def _read_fast(path: Path) -> dict | None:
    """Blocks as ``starfile.read(path, always_dict=True)`` gives them, parsing each loop with
    pandas straight from the file (no copy of the text); None when the file needs starfile."""
    layout = []  # (name, "loop", columns, byte offset of the first row, rows) or (name, "simple", lines)
    with open(path, "rb") as f:
        offset, state = 0, None
        for raw in f:
            line = raw.strip()
            start, offset = offset, offset + len(raw)
            if line.startswith(b"data_"):
                layout.append([line[5:].decode(), None, [], None, 0])
                state = "block"
            elif state is None or not line:
                continue
            elif state == "block" and line.startswith(b"loop_"):
                layout[-1][1], state = "loop", "header"
            elif state == "block" and line.startswith(b"_"):
                layout[-1][1], state = "simple", "simple"
                layout[-1][2].append(line.decode())
            elif state == "simple":
                if line.startswith(b"_"):
                    layout[-1][2].append(line.decode())
            elif state == "header" and line.startswith(b"_"):
                layout[-1][2].append(line.split()[0][1:].decode())
            elif state in ("header", "rows"):
                if line.startswith(b"#"):
                    continue  # a comment (RELION's "# version"): pandas skips it too
                if b"'" in line:
                    return None  # quoted with ': starfile's own parser
                if state == "header":
                    layout[-1][3], state = start, "rows"
                layout[-1][4] += 1
    blocks: dict = {}
    with open(path, "rb") as f:
        for name, kind, items, first, rows in layout:
            if kind == "simple":
                block = {}
                for item in items:
                    key, value = shlex.split(item)
                    block[key[1:]] = numericise(value)
                blocks[name] = block
            elif kind == "loop":
                blocks[name] = _read_loop(f, items, first, rows)
    return blocks


def _read_loop(f, columns: list[str], first: int | None, rows: int) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame(np.zeros((0, len(columns))), columns=columns)
    f.seek(first)
    df = pd.read_csv(f, sep=r"\s+", header=None, comment="#", nrows=rows, keep_default_na=False,
                     na_values=["nan", "NaN", "<NA>"], engine="c")
    if df.shape[1] != len(columns):
        raise ValueError(f"{len(columns)} columns named but rows hold {df.shape[1]}")
    df.columns = columns
    for column in columns:  # as starfile: text columns that parse as numbers become numbers
        if not pd.api.types.is_numeric_dtype(df[column]):
            try:
                numeric = pd.to_numeric(df[column])
            except (ValueError, TypeError):
                continue
            if not numeric.isna().all():
                df[column] = numeric
    return df
