"""The finish of a run with a point group (``cryoai train --symmetry G``), after the C1 finish.

Training under the group (warm start and monitor maps symmetrised in RELION's orientation, the
encoder supervised modulo the group) leaves the map in the group's standard frame, F = I. Only
a run without a warm start has an arbitrary frame, where the group's axes must be searched for
(``eval.symmetry_search``: frame F, operators F·S·Fᵀ). ``search``: True searches, False keeps
F = I; None decides by the map: F = I when it scores at least STANDARD_SCORE about RELION's
axes (a map in another frame scored ≤ 0.71 for C3 … D3 phantoms, but up to 0.89 for C2), else
the searched axes if they score better. Then ``rounds`` × (reconstruct from all particles with
the sums symmetrised over F·S·Fᵀ, refine every pose locally against that map), and a last
symmetrised reconstruction; none of that when F = I and the finish before it already
symmetrised its maps in that frame (``PoseSettings.symmetry``, a run with a warm start). The model keeps its frame (the encoder learnt it, and ``cryoai
predict`` uses both); what is written is turned onto RELION's orientation: the map V(F·u) and
the poses A·F, each reduced to RELION's asymmetric unit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cryoai.data.training_data import TrainingData
from cryoai.eval.map_symmetry import rotate_to_standard, symmetry_score
from cryoai.eval.symmetry_search import find_symmetry_frame
from cryoai.geometry.symmetry import canonical_symbol, point_group, to_asymmetric_unit
from cryoai.models.volume_map import volume_to_map
from cryoai.train.finish import Poses, PoseSettings, predict, reconstruct

STANDARD_SCORE = 0.8  # about RELION's axes, a map scoring this is taken as trained in that frame (1/√K: no symmetry)


def load_symmetrised_reconstruction(volume, data: TrainingData, rows: np.ndarray, poses: Poses,
                                    operators: np.ndarray, how: PoseSettings) -> None:
    """Set ``volume`` to the reconstruction of ``rows`` at ``poses`` (one per row: rotations,
    origins in Å), its sums symmetrised over ``operators`` (K, 3, 3)."""
    rotations, origins_A = poses
    spectrum = reconstruct(data, np.asarray(rows), torch.from_numpy(rotations).float(),
                           torch.from_numpy(origins_A / data.apix).float(), volume.oversample, how.workers,
                           operators=torch.as_tensor(operators).float())
    volume.load_spectrum(spectrum.to(how.device))


def symmetry_frame(vol: np.ndarray, symbol: str, log: Callable[[str], None], search: bool | None = None) -> np.ndarray:
    """F (3, 3) by ``search`` (module docstring): the identity (RELION's axes, the training
    frame) or the axes searched for in ``vol``; which one, logged."""
    standard = symmetry_score(vol, symbol)
    if search is False or (search is None and standard >= STANDARD_SCORE):
        log(f"symmetry {symbol}: the map scores {standard:.3f} about RELION's axes (the training frame): no axis search")
        return np.eye(3)
    fit = find_symmetry_frame(vol, symbol)
    if fit.score <= standard and search is None:
        log(f"symmetry {symbol}: the map scores {standard:.3f} about RELION's axes, {fit.score:.3f} about the axes "
            "searched for: RELION's kept")
        return np.eye(3)
    log(f"symmetry {symbol}: the map scores {standard:.3f} about RELION's axes, {fit.score:.3f} about the axes "
        "found: those used")
    return fit.frame


def symmetric_finish(encoder, volume, data: TrainingData, poses: Poses, how: PoseSettings, symbol: str,
                     rounds: int = 1, log: Callable[[str], None] = lambda line: None,
                     rows: np.ndarray | None = None, search: bool | None = None) -> tuple[Poses, np.ndarray, np.ndarray]:
    """The module docstring's finish, from the C1 finish's ``poses`` and map (in ``volume``); the
    maps are made from ``rows`` (the kept particles; None: all), every particle's pose is refined;
    ``search``: whether the group's axes are searched for (``symmetry_frame``).
    Returns (poses to write: A·F in the asymmetric unit, origins unchanged; the map to write, in
    RELION's orientation; the rotation R = Fᵀ that turned the model's frame onto it)."""
    box = data.train_box
    rows = np.arange(len(data.particles)) if rows is None else np.asarray(rows)
    frame = symmetry_frame(volume_to_map(volume, box).cpu().numpy(), symbol, log, search)
    operators = frame @ point_group(symbol) @ frame.T
    if np.array_equal(frame, np.eye(3)) and canonical_symbol(how.symmetry) == canonical_symbol(symbol):
        log(f"symmetry {symbol}: the finish's maps were symmetrised in this frame already; poses folded into "
            "the asymmetric unit")
    else:
        for k in range(1, rounds + 1):
            load_symmetrised_reconstruction(volume, data, rows, (poses[0][rows], poses[1][rows]), operators, how)
            poses = predict(encoder, volume, data, None, how, start=poses)
            log(f"symmetric refinement {k}/{rounds}: reconstructed under {symbol}, poses refined")
        load_symmetrised_reconstruction(volume, data, rows, (poses[0][rows], poses[1][rows]), operators, how)
    turned = rotate_to_standard(volume_to_map(volume, box).cpu().numpy(), frame)
    rotations = to_asymmetric_unit(poses[0] @ frame, symbol)
    return (rotations, poses[1]), turned, frame.T
