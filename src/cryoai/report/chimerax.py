"""A ChimeraX script (``view.cxc``) that shows the run's map at a sensible contour level.

Contour level: the value enclosing the brightest ``ENCLOSED_FRACTION`` (2 %) of voxels.
- An ab initio map has an arbitrary scale and offset, so only a rank-based level is
  comparable between runs; a fixed value or mean + 2σ is not (σ and the mean depend on how
  much of the box is solvent: for a particle filling 20 % of the box mean + 2σ lies above the
  protein density and nothing shows).
- A particle extracted in a box about twice its diameter fills at most π/48 ≈ 6.5 % of the box
  as a sphere and roughly half of that as protein, i.e. ~3 %; 2 % shows the whole molecule a
  little conservatively, without joining solvent noise. ChimeraX's own default (1 %) shows only
  the cores of the smooth, low-resolution maps of ab initio runs.
The level, the enclosed volume and the protein mass it would hold (1.21 Å³ per Da, i.e. a
protein density of 1.37 g/cm³) are written as comments so the user can judge and change it
(``volume #1 level X``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cryoai import __version__
from cryoai.io.atomic import atomic_path

ENCLOSED_FRACTION = 0.02
A3_PER_DALTON = 1.21  # protein volume per mass, the usual factor (density 1.37 g/cm³)


def contour_level(vol: np.ndarray, fraction: float = ENCLOSED_FRACTION) -> float:
    """The value above which ``fraction`` of the voxels lie."""
    return float(np.quantile(np.asarray(vol, dtype=np.float64), 1.0 - fraction))


def enclosed(vol: np.ndarray, level: float, apix: float) -> tuple[float, float]:
    """(volume in Å³, protein mass in kDa) of the voxels above ``level``."""
    volume_A3 = float(np.count_nonzero(np.asarray(vol) > level)) * apix**3
    return volume_A3, volume_A3 / A3_PER_DALTON / 1000.0


def write_view_script(path: str | os.PathLike, map_path: str | os.PathLike, vol: np.ndarray, apix: float) -> float:
    """Write a ChimeraX command script that opens ``map_path`` (written relative to the
    script's folder, which ChimeraX makes the working directory while running it), sets the
    contour level, centres the view and uses soft lighting. Returns the level."""
    path = Path(path)
    level = contour_level(vol)
    volume_A3, kda = enclosed(vol, level, apix)
    try:
        rel = os.path.relpath(map_path, path.parent)
    except ValueError:  # another drive (Windows)
        rel = str(Path(map_path).resolve())
    text = "\n".join([
        f"# written by cryoai {__version__} (cryoai report); run with `chimerax {path.name}` or drag into ChimeraX",
        f"# contour level {level:.6g}: encloses the brightest {100 * ENCLOSED_FRACTION:g} % of voxels,",
        f"# {volume_A3:.4g} Å³ ≈ {kda:.4g} kDa of protein at {A3_PER_DALTON} Å³/Da;",
        "# change it with `volume #1 level X`",
        "# (assumes a fresh session, so the map becomes model #1)",
        f'open "{rel}"',
        f"volume #1 style surface level {level:.6g}",
        "view",
        "lighting soft",
        "",
    ])
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return level
