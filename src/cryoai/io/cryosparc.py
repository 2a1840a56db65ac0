"""cryoSPARC ``.cs`` files: NumPy structured arrays, one record per particle.

Fields used (cryoSPARC's names and units): ``blob/path``, ``blob/idx`` (0-based),
``blob/shape`` (px), ``blob/psize_A`` (Å/px), ``ctf/df1_A``, ``ctf/df2_A`` (Å),
``ctf/df_angle_rad``, ``ctf/accel_kv``, ``ctf/cs_mm``, ``ctf/amp_contrast``,
``ctf/phase_shift_rad``, ``ctf/bfactor`` (Å²); poses ``alignments3D/pose`` (axis-angle, rad,
RELION A = expmap(pose)ᵀ) and ``alignments3D/shift`` (px, the sign of RELION's origin).

As a table, a field with a shape (e.g. ``blob/shape`` (2,)) becomes columns ``blob/shape[0]``,
``blob/shape[1]``, and byte strings become ``str``; ``table_to_records`` reverses both.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cryoai.errors import InputError
from cryoai.io.atomic import atomic_path

_ELEMENT = re.compile(r"^(.*)\[(\d+)\]$")


def read_cs(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.cs`` file → structured array (via numpy; cryosparc-tools for newer formats)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such cryoSPARC .cs file; check the path")
    try:
        records = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        try:
            from cryosparc.dataset import Dataset

            records = Dataset.load(path).to_records()
        except Exception as e:  # any failure here means the file is not a .cs dataset
            raise InputError(f"{path}: not a cryoSPARC .cs file ({type(e).__name__}); "
                             f"export the particles from cryoSPARC again") from None
    if not isinstance(records, np.ndarray) or records.dtype.names is None or records.ndim != 1:
        raise InputError(f"{path}: not a cryoSPARC particle file (no record fields); "
                         f"give a particles .cs file")
    if len(records) == 0:
        raise InputError(f"{path}: the .cs file holds no particles; give a non-empty particle set")
    return records


def records_to_table(records: np.ndarray) -> pd.DataFrame:
    """Structured array → DataFrame (shaped fields split into ``name[i]``, bytes → str)."""
    columns: dict[str, np.ndarray] = {}
    for name in records.dtype.names:
        values = records[name]
        if values.dtype.kind == "S":
            columns[name] = np.char.decode(values, "utf-8", errors="replace").astype(object)
        elif values.ndim > 1:
            flat = values.reshape(len(values), -1)
            for i in range(flat.shape[1]):
                columns[f"{name}[{i}]"] = flat[:, i]
        else:
            columns[name] = values
    return pd.DataFrame(columns)


def table_to_records(table: pd.DataFrame) -> np.ndarray:
    """DataFrame from ``records_to_table`` (possibly with new columns) → structured array."""
    fields: dict[str, list[str]] = {}
    for col in table.columns:
        match = _ELEMENT.match(str(col))
        fields.setdefault(match.group(1) if match else str(col), []).append(col)
    dtype, data = [], {}
    for name, cols in fields.items():
        values = table[cols[0]].to_numpy() if len(cols) == 1 else table[cols].to_numpy()
        if values.dtype == object:
            encoded = np.array([str(v).encode("utf-8") for v in values.ravel()])
            values = encoded.astype(f"S{max(1, encoded.dtype.itemsize)}").reshape(values.shape)
        dtype.append((name, values.dtype) if values.ndim == 1 else (name, values.dtype, values.shape[1:]))
        data[name] = values
    records = np.zeros(len(table), dtype=dtype)
    for name, values in data.items():
        records[name] = values
    return records


def write_cs(path: str | os.PathLike, records: np.ndarray) -> None:
    """Write a structured array as a ``.cs`` file (NumPy ``.npy`` format), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, records, allow_pickle=False)
