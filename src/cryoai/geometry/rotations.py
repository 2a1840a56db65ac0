"""Rotations in RELION's convention (see ``conventions.py``), on numpy and roma.

A pose is RELION's matrix A: the image of a particle with pose A is
P(x, y) = ∫ V(Aᵀ·[x, y, z]) dz, so its 2D transform is V̂ at Aᵀ·[kx, ky, 0].
"""

from __future__ import annotations

import numpy as np
import roma
import torch


def euler_to_matrix(rot_deg, tilt_deg, psi_deg) -> np.ndarray:
    """RELION ZYZ Euler angles (degrees) → matrices A, shape (..., 3, 3), float64.

    Follows RELION's ``Euler_angles2matrix`` term by term.
    """
    a, b, g = (np.deg2rad(np.asarray(x, dtype=np.float64)) for x in (rot_deg, tilt_deg, psi_deg))
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    A = np.empty(np.broadcast(a, b, g).shape + (3, 3))
    A[..., 0, 0] = cg * cc - sg * sa
    A[..., 0, 1] = cg * cs + sg * ca
    A[..., 0, 2] = -cg * sb
    A[..., 1, 0] = -sg * cc - cg * sa
    A[..., 1, 1] = -sg * cs + cg * ca
    A[..., 1, 2] = sg * sb
    A[..., 2, 0] = sc
    A[..., 2, 1] = ss
    A[..., 2, 2] = cb
    return A


def matrix_to_euler(A) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matrices A (..., 3, 3) → RELION (rot, tilt, psi) in degrees, tilt in [0, 180].

    Like RELION's ``Euler_matrix2angles``: where sin(tilt) ≈ 0 only rot + psi (tilt 0) or
    psi − rot (tilt 180) is defined, and rot is set to 0.
    """
    A = np.asarray(A, dtype=np.float64)
    sb = np.hypot(A[..., 0, 2], A[..., 1, 2])
    regular = sb > 1e-6
    rot = np.where(regular, np.arctan2(A[..., 2, 1], A[..., 2, 0]), 0.0)
    tilt = np.arctan2(sb, A[..., 2, 2])
    psi_regular = np.arctan2(A[..., 1, 2], -A[..., 0, 2])
    psi_top = np.arctan2(-A[..., 1, 0], A[..., 0, 0])  # tilt 0: A is Rz(rot + psi)
    psi_bottom = np.arctan2(A[..., 1, 0], -A[..., 0, 0])  # tilt 180
    psi = np.where(regular, psi_regular, np.where(A[..., 2, 2] > 0, psi_top, psi_bottom))
    tilt = np.where(regular, tilt, np.where(A[..., 2, 2] > 0, 0.0, np.pi))
    return np.rad2deg(rot), np.rad2deg(tilt), np.rad2deg(psi)


def cryosparc_pose_to_matrix(rotvec) -> np.ndarray:
    """cryoSPARC ``alignments3D/pose`` (axis-angle, radians) → RELION matrix A = expmap(v)ᵀ."""
    R = roma.rotvec_to_rotmat(torch.as_tensor(np.asarray(rotvec, dtype=np.float64)))
    return R.transpose(-1, -2).numpy()


def matrix_to_cryosparc_pose(A) -> np.ndarray:
    """RELION matrix A → cryoSPARC axis-angle vector (radians), the inverse of the above."""
    R = torch.as_tensor(np.asarray(A, dtype=np.float64)).transpose(-1, -2).contiguous()
    return roma.rotmat_to_rotvec(R).numpy()


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotation matrices drawn uniformly (Haar) from SO(3), float64, shape (n, 3, 3)."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return roma.unitquat_to_rotmat(torch.from_numpy(q)).numpy()


def viewing_direction(A) -> np.ndarray:
    """Unit vector (..., 3) along which pose A projects the map: Aᵀ·e_z, the third row of A,
    (sin tilt cos rot, sin tilt sin rot, cos tilt)."""
    return np.asarray(A, dtype=np.float64)[..., 2, :]


def rotations_near_view(n: int, rot_deg: float, tilt_deg: float, spread_deg: float,
                        rng: np.random.Generator) -> np.ndarray:
    """``n`` poses (n, 3, 3) whose viewing directions are uniform on the spherical cap of
    half-angle ``spread_deg`` about the direction (rot, tilt), with in-plane angles uniform."""
    centre = euler_to_matrix(rot_deg, tilt_deg, 0.0)
    cos_theta = rng.uniform(np.cos(np.deg2rad(spread_deg)), 1.0, n)
    phi = rng.uniform(0.0, 2 * np.pi, n)
    sin_theta = np.sqrt(1.0 - cos_theta**2)
    local = np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], -1)
    d = local @ centre  # centre's rows are an orthonormal frame whose third row is the direction
    tilt = np.rad2deg(np.arccos(np.clip(d[:, 2], -1.0, 1.0)))
    rot = np.rad2deg(np.arctan2(d[:, 1], d[:, 0]))
    return euler_to_matrix(rot, tilt, rng.uniform(-180.0, 180.0, n))


def geodesic_distance_deg(A, B) -> np.ndarray:
    """Angle in degrees of the rotation taking A to B, elementwise over leading dims."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    cos = (np.einsum("...ij,...ij->...", A, B) - 1.0) / 2.0
    return np.rad2deg(np.arccos(np.clip(cos, -1.0, 1.0)))
