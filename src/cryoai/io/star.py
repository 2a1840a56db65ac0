"""RELION STAR files on ``starfile``: reading tables and writing them atomically."""

from __future__ import annotations

import os

import pandas as pd
import starfile

from cryoai.io.atomic import atomic_path


def write_star(path: str | os.PathLike, blocks: dict[str, pd.DataFrame]) -> None:
    """Write data blocks (``{"optics": df, "particles": df}`` → ``data_optics``, ``data_particles``)
    atomically: to a temporary file, renamed on success."""
    with atomic_path(path) as tmp:
        starfile.write(blocks, tmp, overwrite=True)
