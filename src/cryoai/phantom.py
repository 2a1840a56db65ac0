"""A built-in test molecule: an asymmetric chain of Gaussian 'residues', made on the fly.

It needs no file, so the built-in example runs on a fresh machine. The shape (a few lobes of
different sizes joined by a chain, no symmetry) is fixed by its seed; its size is in Å, so it
looks the same at any box and pixel size that holds it.
"""

from __future__ import annotations

import numpy as np


def phantom_atoms(seed: int = 7, n_atoms: int = 160, step_A: float = 3.8) -> np.ndarray:
    """(n, 3) coordinates in Å of a compact random chain (a protein-like Cα trace), centred."""
    rng = np.random.default_rng(seed)
    pos = np.zeros((n_atoms, 3))
    direction = np.array([1.0, 0.0, 0.0])
    for i in range(1, n_atoms):
        direction = direction + 0.9 * rng.standard_normal(3)
        direction -= 0.02 * pos[i - 1] / step_A  # a weak pull to the centre keeps it globular
        direction /= np.linalg.norm(direction)
        pos[i] = pos[i - 1] + step_A * direction
    return pos - pos.mean(axis=0)


def phantom_map(box: int, apix: float, seed: int = 7, radius_fraction: float = 0.3) -> np.ndarray:
    """A (box, box, box) float32 map (z, y, x) of the phantom, scaled to fill about
    ``radius_fraction`` of the box, Gaussian atoms as wide as the Nyquist limit allows."""
    atoms = phantom_atoms(seed)
    extent = np.percentile(np.linalg.norm(atoms, axis=1), 95)
    atoms = atoms * (radius_fraction * box * apix / extent)
    sigma_A = max(2.0 * apix, 0.8 * 3.8 * radius_fraction * box * apix / extent / 2)
    weights = 1.0 + 0.5 * np.random.default_rng(seed + 1).random(len(atoms))
    grid = (np.arange(box) - box // 2) * apix
    vol = np.zeros((box, box, box), dtype=np.float64)
    gz, gy, gx = np.meshgrid(grid, grid, grid, indexing="ij")
    for (x, y, z), w in zip(atoms, weights):
        vol += w * np.exp(-((gx - x) ** 2 + (gy - y) ** 2 + (gz - z) ** 2) / (2 * sigma_A**2))
    return (vol / vol.max()).astype(np.float32)
