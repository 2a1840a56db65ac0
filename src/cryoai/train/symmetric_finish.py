"""The finish of a run with a point group (``cryoai train --symmetry G``), after the C1 finish.

The ab initio map lies in an arbitrary frame, so the group's axes are found in it first
(``eval.symmetry_search``: frame F, operators F·S·Fᵀ). Then ``rounds`` × (reconstruct from all
particles with the sums symmetrised over F·S·Fᵀ, refine every pose locally against that map),
and a last symmetrised reconstruction. The model keeps this frame (the encoder learnt it, and
``cryoai predict`` uses both); what is written is turned onto RELION's orientation: the map
V(F·u) and the poses A·F, each reduced to RELION's asymmetric unit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cryoai.data.training_data import TrainingData
from cryoai.eval.map_symmetry import rotate_to_standard
from cryoai.eval.symmetry_search import find_symmetry_frame
from cryoai.geometry.symmetry import point_group, to_asymmetric_unit
from cryoai.models.volume_map import volume_to_map
from cryoai.train.finish import Poses, PoseSettings, predict, reconstruct


def symmetrised_reconstruction(volume, data: TrainingData, poses: Poses, operators: np.ndarray, how: PoseSettings,
                               rows: np.ndarray | None = None) -> None:
    """Set ``volume`` to the reconstruction of ``rows`` (None: all particles) at ``poses`` (one per
    particle), symmetrised over ``operators``."""
    rows = np.arange(len(data.particles)) if rows is None else np.asarray(rows)
    rotations, origins_A = poses[0][rows], poses[1][rows]
    spectrum = reconstruct(data, rows, torch.from_numpy(rotations).float(), torch.from_numpy(origins_A / data.apix).float(),
                           volume.oversample, how.workers, operators=torch.from_numpy(operators).float())
    volume.load_spectrum(spectrum.to(how.device))


def symmetric_finish(encoder, volume, data: TrainingData, poses: Poses, how: PoseSettings, symbol: str,
                     rounds: int = 1, log: Callable[[str], None] = lambda line: None,
                     rows: np.ndarray | None = None) -> tuple[Poses, np.ndarray, np.ndarray]:
    """The module docstring's finish, from the C1 finish's ``poses`` and map (in ``volume``); the
    maps are made from ``rows`` (the kept particles; None: all), every particle's pose is refined.
    Returns (poses to write: A·F in the asymmetric unit, origins unchanged; the map to write, in
    RELION's orientation; the rotation R = Fᵀ that turned the model's frame onto it)."""
    box = data.train_box
    fit = find_symmetry_frame(volume_to_map(volume, box).cpu().numpy(), symbol)
    log(f"symmetry {symbol}: the C1 map scores {fit.score:.3f} about the axes found")
    operators = fit.frame @ point_group(symbol) @ fit.frame.T
    for k in range(1, rounds + 1):
        symmetrised_reconstruction(volume, data, poses, operators, how, rows)
        poses = predict(encoder, volume, data, None, how, start=poses)
        log(f"symmetric refinement {k}/{rounds}: reconstructed under {symbol}, poses refined")
    symmetrised_reconstruction(volume, data, poses, operators, how, rows)
    turned = rotate_to_standard(volume_to_map(volume, box).cpu().numpy(), fit.frame)
    rotations = to_asymmetric_unit(poses[0] @ fit.frame, symbol)
    return (rotations, poses[1]), turned, fit.rotation
