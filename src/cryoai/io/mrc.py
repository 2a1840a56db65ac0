"""MRC maps: read with the voxel size, write atomically with the voxel size and a centred origin.

Arrays are indexed (z, y, x) as mrcfile returns them; the box centre is voxel L/2 (0-based),
as RELION and ChimeraX expect, so the header origin is left at 0.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import mrcfile
import numpy as np

from cryoai.errors import InputError
from cryoai.io.atomic import atomic_path


def read_map(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a 3D map → (float32 array (z, y, x), voxel size in Å; 0.0 when the header has none).

    The header's axis order (mapc, mapr, maps: which of x, y, z runs along columns, rows and
    sections) is honoured, so a map stored with permuted axes comes back indexed (z, y, x).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such map file; check the path")
    try:
        with warnings.catch_warnings():  # permissive mode warns on junk; the error below says it once
            warnings.simplefilter("ignore")
            m = mrcfile.open(path, permissive=True)
        with m:
            if m.data is None:
                raise ValueError("no data")
            data = np.asarray(m.data, dtype=np.float32)
            axes = (int(m.header.maps), int(m.header.mapr), int(m.header.mapc))  # axis of sections, rows, columns
            apix = float(m.voxel_size.x)
    except (ValueError, OSError) as e:
        raise InputError(f"{path}: not a readable MRC map ({e}); give an MRC/CCP4 file") from None
    if data.ndim != 3 or len(set(data.shape)) != 1:
        raise InputError(f"{path}: expected a cubic 3D map, found shape {data.shape}; resample it to a cube")
    if sorted(axes) != [1, 2, 3]:
        raise InputError(f"{path}: the header's axis order (mapc, mapr, maps) = {axes[::-1]} is not a permutation "
                         f"of 1, 2, 3; rewrite the map with a valid header")
    data = data.transpose([axes.index(a) for a in (3, 2, 1)]).copy()  # → (z, y, x), C order, writable
    if not np.all(np.isfinite(data)):
        raise InputError(f"{path}: the map holds NaN or infinite values; repair or regenerate it")
    return data, apix


def write_map(path: str | os.PathLike, data: np.ndarray, apix: float) -> None:
    """Write a 3D float32 map with voxel size ``apix`` Å, atomically (temporary file + rename)."""
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as m:
            m.set_data(np.ascontiguousarray(data, dtype=np.float32))
            m.voxel_size = float(apix)
            m.update_header_stats()
