"""Symmetrising a map over a point group, and how symmetric a map is about a given orientation.

Maps are (z, y, x) arrays rotated about the centre voxel L/2 as in :mod:`cryoai.eval.align`
(``transform_map(vol, G)(u) = vol(Gᵀu)``). A point group in orientation F (a rotation, "the
frame") has the operators F·S·Fᵀ, S from :func:`cryoai.geometry.symmetry.point_group`: F = I is
RELION's standard orientation, and a map V0 symmetric there turned by F, V(u) = V0(Fᵀu), is
symmetric in frame F.
"""

from __future__ import annotations

import numpy as np
import torch

from cryoai.eval.align import _rotate_batch, transform_map
from cryoai.geometry.symmetry import point_group


def frame_operators(symbol: str, frame: np.ndarray | None = None) -> np.ndarray:
    """The group's rotations F·S·Fᵀ (K, 3, 3) in orientation ``frame`` (default: RELION's)."""
    ops = point_group(symbol)
    if frame is None:
        return ops
    F = np.asarray(frame, dtype=np.float64)
    return F @ ops @ F.T


def symmetrise_map(vol: np.ndarray, symbol: str, frame: np.ndarray | None = None) -> np.ndarray:
    """The average of the map rotated by each operator of the group (in orientation ``frame``),
    float32: out(u) = (1/K) Σₖ vol(Sₖᵀu). Trilinear interpolation; 0 outside the box."""
    v = torch.as_tensor(np.asarray(vol, dtype=np.float32))
    out = torch.zeros_like(v)
    ops = torch.as_tensor(frame_operators(symbol, frame), dtype=torch.float32)
    for s in range(0, len(ops), 8):  # a few rotated copies at a time bound the memory
        out += _rotate_batch(v, ops[s : s + 8]).sum(0)
    return (out / len(ops)).numpy()


def _sphere_shells(box: int) -> tuple[np.ndarray, np.ndarray]:
    """Voxels within radius box/2 − 1 of the centre (where rotated copies are all defined) and
    each one's shell (radius rounded to a voxel)."""
    i = np.arange(box) - box // 2
    z, y, x = np.meshgrid(i, i, i, indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    inside = r <= box / 2 - 1
    return inside, np.round(r[inside]).astype(int)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two maps' departures from spherical symmetry: over the sphere of radius
    box/2 − 1, each map less its own mean over each shell of constant radius. The radial profile
    is unchanged by every rotation, so leaving it in would make any map look a little symmetric
    under any group (a ring or a cage most of all)."""
    inside, shell = _sphere_shells(a.shape[0])
    count = np.bincount(shell)

    def departures(v):
        v = np.asarray(v, dtype=np.float64)[inside]
        return v - (np.bincount(shell, v) / count)[shell]

    x, y = departures(a), departures(b)
    return float((x * y).sum() / max(np.sqrt((x * x).sum() * (y * y).sum()), 1e-30))


def symmetry_score(vol: np.ndarray, symbol: str, frame: np.ndarray | None = None) -> float:
    """The correlation (``correlation``: the spherical average removed) of a map with its
    symmetrised copy, group ``symbol`` in orientation ``frame``: 1 for a map with that
    symmetry; for a map without, about 1/√K (K the group's order) plus the map's smoothness."""
    return correlation(np.asarray(vol, dtype=np.float32), symmetrise_map(vol, symbol, frame))


def rotate_to_standard(vol: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """A map symmetric in orientation F, turned onto the group's standard orientation:
    out(u) = vol(F·u) (the rotation R = Fᵀ applied to the map)."""
    return transform_map(vol, np.asarray(frame, dtype=np.float64).T)
