"""Symmetrising a map and scoring its symmetry about a candidate orientation."""

from __future__ import annotations

import numpy as np

from cryoai.eval.map_symmetry import rotate_to_standard, symmetry_score
from cryoai.eval.align import transform_map
from cryoai.geometry.symmetry import axis_rotation, point_group
from helpers import symmetric_phantom


def test_symmetrised_map_is_invariant_and_scores_one_only_about_its_axis():
    v = symmetric_phantom(32, "C4", seed=2)
    S = point_group("C4")[1]
    assert np.corrcoef(transform_map(v, S).ravel(), v.ravel())[0, 1] > 0.995
    assert symmetry_score(v, "C4") > 0.99
    tilted = axis_rotation((1.0, 0.0, 0.0), np.deg2rad(40))
    assert symmetry_score(v, "C4", frame=tilted) < 0.8
    assert symmetry_score(v, "C5") < 0.8


def test_a_turned_symmetric_map_scores_in_its_frame_and_comes_back():
    v0 = symmetric_phantom(32, "O", seed=4, offset=(0.2, 0.12, 0.06))
    F = axis_rotation((0.3, -0.5, 0.8), 0.7)
    v = transform_map(v0, F)  # v(u) = v0(Fᵀu): symmetric in frame F
    assert symmetry_score(v, "O", frame=F) > 0.99
    assert symmetry_score(v, "O") < 0.8
    back = rotate_to_standard(v, F)
    inside = (np.abs(np.arange(32) - 16) < 10)
    assert np.corrcoef(back[inside][:, inside][:, :, inside].ravel(), v0[inside][:, inside][:, :, inside].ravel())[0, 1] > 0.98
