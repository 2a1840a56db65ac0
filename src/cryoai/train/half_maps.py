"""Half maps from one set of poses: a resolution estimate that needs no ground truth.

The rows are split at random into two halves (``split_halves``), each half is reconstructed
directly from its poses (``finish.reconstruct``) and the two maps are compared by FSC inside
the box's inscribed sphere. The halves share the poses' origin (one refinement against one
map), so this FSC is optimistic, not gold standard, unless the poses came from two
independent runs (``train --halves``); every caller must label it so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cryoai.data.training_data import TrainingData
from cryoai.eval.fsc import fsc, resolution, sphere_mask
from cryoai.physics.backprojection import spectrum_to_map
from cryoai.train.finish import reconstruct


def split_halves(n: int, seed: int) -> np.ndarray:
    """rlnRandomSubset labels (1 or 2) of ``n`` rows, balanced, random."""
    labels = np.where(np.arange(n) < (n + 1) // 2, 1, 2)
    return np.random.default_rng([seed, 12]).permutation(labels)


@dataclass
class HalfMaps:
    """Two half maps (train box, Å/px of the training data), their FSC and the resolution at 0.143."""

    maps: tuple[np.ndarray, np.ndarray]
    fsc: np.ndarray  # one value per shell 0 … box/2
    resolution_px: float  # at FSC 0.143 (inf: below it from shell 1)
    resolution_A: float


def half_maps(data: TrainingData, rows: np.ndarray, rotations: np.ndarray, origins_A: np.ndarray,
              oversample: int = 2, seed: int = 0, workers: int = 0) -> HalfMaps:
    """Reconstruct the two random halves of ``rows`` at their poses (RELION matrices (N, 3, 3)
    and origins (N, 2) in Å, one per row) and compare them (module docstring)."""
    labels = split_halves(len(rows), seed)
    box = data.train_box
    maps = []
    for half in (1, 2):
        sel = labels == half
        spectrum = reconstruct(data, rows[sel], torch.from_numpy(rotations[sel]).float(),
                               torch.from_numpy(origins_A[sel] / data.apix).float(), oversample, workers)
        maps.append(spectrum_to_map(spectrum, box))
    curve = fsc(maps[0], maps[1], sphere_mask(box))
    res_A, res_px = resolution(curve, 0.143, box, data.apix)
    return HalfMaps((maps[0], maps[1]), curve, res_px, res_A)
