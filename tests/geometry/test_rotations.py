"""Rotations against independent constructions: RELION's ZYZ matrix built from elementary
rotations, the formula in CONVENTIONS.md typed in by hand, Rodrigues' formula for cryoSPARC's
axis-angle poses, and the known statistics of Haar-uniform rotations."""

from __future__ import annotations

import numpy as np
import pytest

from cryoai.geometry.rotations import (
    cryosparc_pose_to_matrix,
    euler_to_matrix,
    geodesic_distance_deg,
    matrix_to_cryosparc_pose,
    matrix_to_euler,
    random_rotations,
)


# --- independent constructions (numpy only, written from the definitions) -------------------

def rz(deg: float) -> np.ndarray:
    """RELION's elementary R_z(a) = [[c, s, 0], [−s, c, 0], [0, 0, 1]]."""
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def ry(deg: float) -> np.ndarray:
    """RELION's elementary R_y(b) = [[c, 0, −s], [0, 1, 0], [s, 0, c]]."""
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])


def zyz(rot: float, tilt: float, psi: float) -> np.ndarray:
    """A = R_z(ψ)·R_y(θ)·R_z(φ)."""
    return rz(psi) @ ry(tilt) @ rz(rot)


def conventions_formula(rot: float, tilt: float, psi: float) -> np.ndarray:
    """The matrix exactly as printed in CONVENTIONS.md (RELION's Euler_angles2matrix)."""
    a, b, g = np.deg2rad([rot, tilt, psi])
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array([[cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
                     [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
                     [sc, ss, cb]])


def rodrigues(rotvec: np.ndarray) -> np.ndarray:
    """R = I + sin θ K + (1 − cos θ) K², K the cross-product matrix of the unit axis."""
    theta = np.linalg.norm(rotvec)
    if theta < 1e-15:
        return np.eye(3)
    x, y, z = rotvec / theta
    K = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K


RNG_ANGLES = np.random.default_rng(11).uniform([-360, 0, -360], [360, 180, 360], size=(40, 3))


# --- RELION Euler angles -------------------------------------------------------------------------

def test_conventions_formula_is_zyz_composition():
    """The CONVENTIONS.md formula equals R_z(ψ)·R_y(θ)·R_z(φ) built from elementary rotations."""
    for rot, tilt, psi in RNG_ANGLES:
        np.testing.assert_allclose(conventions_formula(rot, tilt, psi), zyz(rot, tilt, psi), atol=1e-14)


def test_euler_to_matrix_matches_hand_composition():
    """euler_to_matrix equals the hand-built ZYZ product, for scalars and broadcast arrays."""
    A = euler_to_matrix(RNG_ANGLES[:, 0], RNG_ANGLES[:, 1], RNG_ANGLES[:, 2])
    assert A.shape == (len(RNG_ANGLES), 3, 3)
    for Ai, (rot, tilt, psi) in zip(A, RNG_ANGLES):
        np.testing.assert_allclose(Ai, zyz(rot, tilt, psi), atol=1e-14)
    np.testing.assert_allclose(euler_to_matrix(30.0, 40.0, 50.0), zyz(30, 40, 50), atol=1e-14)


def test_matrix_to_euler_round_trip_random_so3():
    """angles(A) rebuild A over Haar-random SO(3) (matrices compared, not angles); tilt ∈ [0, 180]."""
    A = random_rotations(500, np.random.default_rng(0))
    rot, tilt, psi = matrix_to_euler(A)
    assert np.all((tilt >= 0) & (tilt <= 180))
    np.testing.assert_allclose(euler_to_matrix(rot, tilt, psi), A, atol=1e-10)
    for Ai, r, t, p in zip(A[:20], rot[:20], tilt[:20], psi[:20]):
        np.testing.assert_allclose(zyz(r, t, p), Ai, atol=1e-10)


@pytest.mark.parametrize("tilt", [0.0, 1e-9, 1e-6, 1e-4, 1e-2, 1.0, 90.0, 179.0, 180 - 1e-2, 180 - 1e-4, 180 - 1e-6, 180 - 1e-9, 180.0])
def test_matrix_to_euler_round_trip_near_gimbal_lock(tilt):
    """At and near tilt 0 and 180 (where only rot ± psi is defined) angles(A) still rebuild A."""
    rng = np.random.default_rng(int(tilt * 1000) % 2**32)
    for rot, psi in rng.uniform(-180, 180, size=(8, 2)):
        A = zyz(rot, tilt, psi)
        r, t, p = matrix_to_euler(A)
        np.testing.assert_allclose(zyz(float(r), float(t), float(p)), A, atol=2e-6)


def test_tilt_zero_is_in_plane_rotation_by_rot_plus_psi():
    """At tilt 0, A = R_z(rot + psi): RELION's in-plane rotation by rot + psi (clockwise for +psi)."""
    np.testing.assert_allclose(euler_to_matrix(25.0, 0.0, 40.0), rz(65.0), atol=1e-14)
    # R_z(a) of RELION is the counter-clockwise rotation by −a
    np.testing.assert_allclose(euler_to_matrix(0.0, 0.0, 90.0) @ [1, 0, 0], [0, -1, 0], atol=1e-14)


# --- random rotations and distances --------------------------------------------------------------

def test_random_rotations_are_proper_and_haar_uniform():
    """Orthonormal with det +1; Haar statistics: E[trace] = 0, P(angle < 90°) = (π/2 − 1)/π, rows uniform on S²."""
    A = random_rotations(20000, np.random.default_rng(1))
    assert A.shape == (20000, 3, 3) and A.dtype == np.float64
    np.testing.assert_allclose(A @ A.transpose(0, 2, 1), np.broadcast_to(np.eye(3), A.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(A), 1.0, atol=1e-12)
    trace = np.trace(A, axis1=1, axis2=2)
    assert abs(trace.mean()) < 0.05  # Var(trace) = 1 for Haar measure: 7 σ
    angle = np.arccos(np.clip((trace - 1) / 2, -1, 1))
    assert abs((angle < np.pi / 2).mean() - (np.pi / 2 - 1) / np.pi) < 0.012
    view = A[:, 2, :]  # the viewing direction: uniform on the sphere
    assert np.all(np.abs(view.mean(0)) < 0.03)
    np.testing.assert_allclose((view**2).mean(0), 1 / 3, atol=0.015)
    b = random_rotations(5, np.random.default_rng(1))
    np.testing.assert_array_equal(b, random_rotations(5, np.random.default_rng(1)))


def test_geodesic_distance_against_rodrigues():
    """The distance between A and R(n, θ)·A is θ, for any axis n, in both orders."""
    rng = np.random.default_rng(2)
    A = random_rotations(6, rng)
    for theta in (0.0, 0.5, 10.0, 90.0, 179.0, 180.0):
        axis = rng.standard_normal(3)
        axis /= np.linalg.norm(axis)
        B = np.stack([rodrigues(np.deg2rad(theta) * axis) @ a for a in A])
        np.testing.assert_allclose(geodesic_distance_deg(A, B), theta, atol=1e-4)
        np.testing.assert_allclose(geodesic_distance_deg(B, A), theta, atol=1e-4)


# --- cryoSPARC axis-angle ------------------------------------------------------------------------

def test_cryosparc_pose_is_transposed_rodrigues():
    """cryoSPARC pose v → RELION A = R(v)ᵀ with R from Rodrigues' formula, incl. tiny and near-π angles."""
    rng = np.random.default_rng(3)
    vecs = [rng.standard_normal(3) for _ in range(20)]
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    vecs += [1e-9 * axis, 1e-4 * axis, (np.pi - 1e-6) * axis, np.zeros(3)]
    A = cryosparc_pose_to_matrix(np.stack(vecs))
    for Ai, v in zip(A, vecs):
        np.testing.assert_allclose(Ai, rodrigues(v).T, atol=1e-12)
    np.testing.assert_allclose(cryosparc_pose_to_matrix(vecs[0]), rodrigues(vecs[0]).T, atol=1e-12)


def test_cryosparc_pose_round_trip():
    """matrix_to_cryosparc_pose inverts cryosparc_pose_to_matrix (compared as matrices)."""
    A = random_rotations(200, np.random.default_rng(4))
    v = matrix_to_cryosparc_pose(A)
    assert np.all(np.linalg.norm(v, axis=1) <= np.pi + 1e-9)
    for Ai, vi in zip(A, v):
        np.testing.assert_allclose(rodrigues(vi).T, Ai, atol=1e-9)
