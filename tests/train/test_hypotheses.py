"""Several pose hypotheses (train/hypotheses.py) against a known map: an encoder guess a quarter
turn off in-plane, or seen from the other side, is recovered; a local search alone stays off."""

from __future__ import annotations

import torch

from cryoai.train.hypotheses import in_plane_turns, pose_residuals, refine_hypotheses
from cryoai.train.refine import refine_poses
from test_refine import degrees, half_turn, problem


def test_quarter_turn_in_plane_is_recovered():
    """Starting from Rz(90°)·A with the origin 0.3 px off: back within 2.5° of A; plain local
    refinement (with its mirror hypotheses) stays far off for every image."""
    volume, freqs, rotations, origins, c, target = problem(2)
    start = in_plane_turns(4)[1] @ rotations
    assert degrees(start, rotations).min() > 89
    rot, origin = refine_hypotheses(volume, start, origins + 0.2, target, c, freqs)
    assert degrees(rot, rotations).max() < 2.5
    assert (origin - origins).norm(dim=1).max() < 0.15
    rot_local, _ = refine_poses(volume, start, origins + 0.2, target, c, freqs)
    assert degrees(rot_local, rotations).min() > 20


def test_mirrored_and_turned_pose_is_recovered():
    """Rz(270°)·M·A, M a half turn about an in-plane axis (the view from the other side, turned):
    back within 2.5°, and the kept pose fits better than the start."""
    volume, freqs, rotations, origins, c, target = problem(3)
    start = in_plane_turns(4)[3] @ half_turn(37.0) @ rotations
    rot, origin = refine_hypotheses(volume, start, origins, target, c, freqs)
    assert degrees(rot, rotations).max() < 2.5
    assert (pose_residuals(volume, rot, origin, target, c, freqs)
            < pose_residuals(volume, start, origins, target, c, freqs)).all()


def test_in_plane_turns_turn_about_the_viewing_axis():
    """Proper rotations that keep z and compose: two quarter turns make the half turn."""
    t = in_plane_turns(4)
    torch.testing.assert_close(torch.linalg.det(t), torch.ones(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(t[:, :, 2], torch.tensor([0.0, 0.0, 1.0]).expand(4, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(t[1] @ t[1], t[2], atol=1e-6, rtol=0)
