"""Pose registration: a known global rotation and mirror are recovered from noisy poses with outliers."""

from __future__ import annotations

import numpy as np
import pytest
import roma
import torch

from cryoai.eval.poses import apply_registration, evaluate_poses, origin_errors_A, register_rotations
from cryoai.geometry.rotations import euler_to_matrix, geodesic_distance_deg, random_rotations

J = np.diag([1.0, 1.0, -1.0])


def _noise(n: int, sigma_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Small random rotations: rotation vectors with N(0, σ²) per axis (radians from degrees)."""
    v = rng.normal(scale=np.deg2rad(sigma_deg), size=(n, 3))
    return roma.rotvec_to_rotmat(torch.from_numpy(v)).numpy()


def _predicted(truth, G, hand, sigma_deg, outlier_frac, rng):
    """Predictions in a frame where truth = A_h·Gᵀ: A_h = N·A*·G (N noise), mirrored for 'flipped'."""
    n = len(truth)
    noise = _noise(n, sigma_deg, rng)
    A = noise @ truth @ G
    if hand == "flipped":
        A = J @ A @ J
    bad = rng.random(n) < outlier_frac
    A[bad] = random_rotations(int(bad.sum()), rng)
    return A, noise, bad


@pytest.mark.parametrize("hand", ["same", "flipped"])
def test_register_recovers_global_rotation_and_hand_with_outliers(hand):
    rng = np.random.default_rng(10)
    truth = random_rotations(600, rng)
    G = euler_to_matrix(30, 60, 120)
    pred, noise, bad = _predicted(truth, G, hand, 4.0, 0.2, rng)
    reg = register_rotations(pred, truth)
    assert reg.hand == hand
    assert geodesic_distance_deg(reg.G, G) < 1.0
    noise_deg = geodesic_distance_deg(noise, np.eye(3))
    # on the non-outliers the error after registration is the injected noise, no more
    assert np.median(reg.errors_deg[~bad]) < 1.05 * np.median(noise_deg[~bad])
    assert np.median(reg.errors_deg) < 20.0
    # the outliers are flagged
    assert reg.inliers[bad].mean() < 0.1 and reg.inliers[~bad].mean() > 0.95
    # registered poses = truth up to the noise (checked with the independent geodesic)
    R = apply_registration(pred, reg.G, reg.hand)
    np.testing.assert_allclose(geodesic_distance_deg(R, truth), reg.errors_deg, atol=1e-6)


def test_register_exact_poses_is_exact():
    rng = np.random.default_rng(11)
    truth = random_rotations(50, rng)
    G = random_rotations(1, rng)[0]
    reg = register_rotations(truth @ G, truth)
    assert reg.hand == "same" and reg.errors_deg.max() < 1e-4
    np.testing.assert_allclose(reg.G, G, atol=1e-8)


def test_evaluate_poses_metrics():
    rng = np.random.default_rng(12)
    n = 400
    truth = random_rotations(n, rng)
    G = euler_to_matrix(-70, 20, 45)
    pred, noise, bad = _predicted(truth, G, "flipped", 3.0, 0.2, rng)
    true_o = rng.normal(scale=5.0, size=(n, 2))
    pred_o = true_o + np.array([3.0, 4.0])  # 5 Å off everywhere: no shift of the map explains that
    m = evaluate_poses(pred, truth, pred_o, true_o, apix=2.5)
    assert m["hand"] == "flipped"
    assert m["n_particles"] == n
    assert m["trans_median_A"] == pytest.approx(5.0, rel=0.05) and m["trans_median_px"] == pytest.approx(2.0, rel=0.05)
    assert np.linalg.norm(m["map_offset_A"]) < 1.5  # sampling noise of 5 Å over ~320 inliers
    ang = np.rad2deg(np.arccos(1 - np.asarray(m["rot_median_sqfrob"]) / 4))  # ‖R − R*‖² = 4(1 − cos θ)
    assert ang == pytest.approx(m["rot_median_deg"], rel=1e-6)
    assert 0.75 < m["frac_within_10deg"] <= m["frac_within_20deg"] < 0.85
    assert m["frac_within_5deg"] <= m["frac_within_10deg"]
    assert m["rot_mean_deg"] > m["rot_median_deg"]  # the outliers pull the mean
    assert np.asarray(m["rotation"]).shape == (3, 3)
    m2 = evaluate_poses(pred, truth)
    assert m2["trans_median_px"] is None and m2["rot_median_deg"] == m["rot_median_deg"]


def test_a_shifted_map_is_not_counted_as_translation_error():
    """Origins moved by a map offset t = (2, −3, 1.5) Å, worked by hand for two poses: at the
    identity by (2, −3); at the rotation with rows (0, 0, −1), (0, 1, 0), (1, 0, 0) by (−1.5, −3).
    With 0.1 Å of noise on each origin and 20 % of the rotations wrong (their origins random), the
    offset is found and the error left is the noise's."""
    rot = np.stack([np.eye(3), np.array([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]])])
    t = np.array([2.0, -3.0, 1.5])
    np.testing.assert_allclose(origin_errors_A(rot, np.array([[2.0, -3.0], [-1.5, -3.0]]), np.zeros((2, 2)), t), 0,
                               atol=1e-12)
    rng = np.random.default_rng(3)
    n = 500
    truth = random_rotations(n, rng)
    pred, _, bad = _predicted(truth, euler_to_matrix(30, 60, -20), "same", 1.0, 0.2, rng)
    true_o = rng.normal(scale=5.0, size=(n, 2))
    pred_o = true_o + pred[:, :2, :] @ t + rng.normal(scale=0.1, size=(n, 2))
    pred_o[bad] = rng.normal(scale=5.0, size=(int(bad.sum()), 2))
    m = evaluate_poses(pred, truth, pred_o, true_o, apix=2.0)
    np.testing.assert_allclose(m["map_offset_A"], t, atol=0.05)
    assert m["trans_median_A"] < 0.2 < np.median(np.linalg.norm(pred_o - true_o, axis=1))


def test_symmetric_map_gives_the_same_images_at_poses_times_symmetry_transposed():
    """The convention the registration relies on: for V(S·x) = V(x), poses A and A·Sᵀ project
    the same image, while S·A (an in-plane turn of the image) does not."""
    from cryoai.eval.poses import point_group
    from cryoai.phantom import phantom_map
    from cryoai.physics.image_model import render_images
    from cryoai.physics.slicing import fourier_map

    box = 33  # odd, so that np.rot90 turns about the centre voxel (L // 2)
    v = phantom_map(box, 4.0)
    v = sum(np.rot90(v, k, axes=(1, 2)) for k in range(4))  # C4 about z (array axes z, y, x)
    vol = fourier_map(torch.from_numpy(np.ascontiguousarray(v)).float())
    A = random_rotations(3, np.random.default_rng(5))
    S = next(m for m in point_group("C4") if abs(np.trace(m) - 1.0) < 1e-9)  # a quarter turn

    def images(poses):
        return render_images(vol, torch.from_numpy(poses).float(), box, 4.0).numpy()

    ref, same, turned = images(A), images(A @ S.T), images(S @ A)
    scale = np.abs(ref).max()
    assert np.abs(same - ref).max() < 1e-3 * scale
    assert np.abs(turned - ref).max() > 0.2 * scale


@pytest.mark.parametrize("symmetry", ["C6", "D3", "T", "O", "I"])
def test_register_with_symmetry_finds_the_nearest_equivalent_pose(symmetry):
    """Predictions equal to the truth up to a random symmetry operation per particle, a global
    rotation, the mirror and noise: C1 sees large errors, the right point group the noise."""
    from cryoai.eval.poses import point_group

    rng = np.random.default_rng(12)
    truth = random_rotations(400, rng)
    group = point_group(symmetry)
    S = group[rng.integers(0, len(group), len(truth))]
    pred, noise, bad = _predicted(truth @ np.swapaxes(S, 1, 2), euler_to_matrix(20, 70, -40), "flipped", 3.0, 0.1, rng)
    plain = evaluate_poses(pred, truth)
    sym = evaluate_poses(pred, truth, symmetry=symmetry)
    assert plain["rot_median_deg"] > 30.0
    assert sym["hand"] == "flipped" and sym["symmetry"] == symmetry and sym["frac_within_10deg"] > 0.85
    reg = register_rotations(pred, truth, symmetry=symmetry)
    noise_deg = geodesic_distance_deg(noise, np.eye(3))
    assert np.median(reg.errors_deg[~bad]) < 1.05 * np.median(noise_deg[~bad])
