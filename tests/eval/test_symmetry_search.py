"""Finding a group's axes in a turned symmetric map, and telling which Cn a map has."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import symmetric_phantom

from cryoai.eval.align import transform_map
from cryoai.eval.map_symmetry import correlation
from cryoai.eval.symmetry_search import align_symmetry, check_symmetry, distinct_frames, frame_from_axis
from cryoai.geometry.rotations import geodesic_distance_deg, random_rotations
from cryoai.geometry.symmetry import axis_rotation, point_group

TURN = axis_rotation((0.4, -0.7, 0.3), 1.1)


@pytest.mark.parametrize("symbol", ["C6", "O"])
def test_align_symmetry_recovers_a_known_rotation(symbol):
    v0 = symmetric_phantom(32, symbol, seed=3)
    v = transform_map(v0, TURN)  # v(u) = v0(TURNᵀu): the group's axes turned by TURN
    aligned, fit = align_symmetry(v, symbol)
    if symbol.startswith("C"):  # only the axis is defined
        error = np.rad2deg(np.arccos(abs(fit.frame[:, 2] @ TURN[:, 2])))
    else:
        error = geodesic_distance_deg(np.broadcast_to(fit.frame, (24, 3, 3)), TURN @ point_group(symbol)).min()
    assert error <= 2.0
    assert fit.score > 0.97
    np.testing.assert_allclose(fit.rotation, fit.frame.T)
    assert correlation(aligned, transform_map(v, fit.rotation)) > 0.999
    if symbol == "O":  # back in the standard orientation (O's frame is unique up to the group)
        assert correlation(aligned, v0) > 0.95


def test_frame_from_axis_and_distinct_frames():
    for d in ([0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.3, -0.2, 0.9]):
        F = frame_from_axis(d)
        np.testing.assert_allclose(F @ [0.0, 0.0, 1.0], np.asarray(d) / np.linalg.norm(d), atol=1e-12)
        np.testing.assert_allclose(F @ F.T, np.eye(3), atol=1e-12)
    grid = random_rotations(4800, np.random.default_rng(0))
    kept = distinct_frames(grid, "O")
    assert 150 < len(kept) < 250  # about 1/24 of the grid


def test_check_finds_the_c6_of_a_turned_ring():
    v = transform_map(symmetric_phantom(32, "C6", seed=5), TURN)
    scores = {s: score for s, score, _ in check_symmetry(v, max_n=6, box=32)}
    assert min(scores["C2"], scores["C3"], scores["C6"]) > 0.9
    assert max(scores["C4"], scores["C5"]) < 0.6
    assert scores["D6"] < 0.9


def test_a_map_smaller_than_the_coarse_box_is_searched():
    v = transform_map(symmetric_phantom(16, "C4", seed=2), TURN)
    _, fit = align_symmetry(v, "C4")
    assert np.rad2deg(np.arccos(abs(fit.frame[:, 2] @ TURN[:, 2]))) < 5.0
