"""Map transforms and alignment, checked against hot voxels and analytic Gaussian projections."""

from __future__ import annotations

import numpy as np
import pytest

from cryoai.eval.align import align_maps, flip_hand, rotation_grid, transform_map
from cryoai.geometry.rotations import euler_to_matrix, geodesic_distance_deg, random_rotations

J = np.diag([1.0, 1.0, -1.0])
# (centre (x, y, z) in voxels from the box centre, sigma in voxels, amplitude): asymmetric
BLOBS = [((5, 0, 0), 2.5, 1.0), ((-3, 5, 1), 1.8, 0.8), ((0, -4, 5), 1.5, 1.2), ((-2, -3, -6), 2.2, 0.6), ((6, 5, -3), 1.2, 1.0)]


pytestmark = pytest.mark.usefixtures("one_thread")


def blob_map(L: int, blobs=BLOBS) -> np.ndarray:
    """Sum of 3D Gaussians, (z, y, x) array with the centre at voxel L//2."""
    i = np.arange(L) - L // 2
    z, y, x = np.meshgrid(i, i, i, indexing="ij")
    out = np.zeros((L, L, L))
    for (cx, cy, cz), s, a in blobs:
        out += a * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * s**2))
    return out.astype(np.float32)


def blob_projection(L: int, A: np.ndarray, blobs=BLOBS) -> np.ndarray:
    """Analytic ∫V(Aᵀ[x, y, z]) dz of ``blob_map``: 2D Gaussians at (A·c)_xy, (y, x) array."""
    i = np.arange(L) - L // 2
    y, x = np.meshgrid(i, i, indexing="ij")
    out = np.zeros((L, L))
    for c, s, a in blobs:
        u = A @ np.asarray(c, dtype=float)
        out += a * np.sqrt(2 * np.pi) * s * np.exp(-((x - u[0]) ** 2 + (y - u[1]) ** 2) / (2 * s**2))
    return out


def project(vol: np.ndarray, A: np.ndarray) -> np.ndarray:
    """∫V(Aᵀ p) dz by resampling (transform_map(V, A)(p) = V(Aᵀ p)) and summing along z."""
    return transform_map(vol, A).sum(axis=0)


@pytest.mark.parametrize("L", [32, 33])
def test_flip_hand_hot_voxel_keeps_centre(L):
    vol = np.zeros((L, L, L), dtype=np.float32)
    x, y, z = 20, 7, 11
    vol[z, y, x] = 1.0
    out = flip_hand(vol)
    assert out[(L - z) % L, y, x] == 1.0 and out.sum() == 1.0
    centre = np.zeros_like(vol)
    centre[L // 2, 3, 4] = 1.0
    if L % 2 == 0:  # for even L the centre plane z = L/2 maps onto itself
        np.testing.assert_array_equal(flip_hand(centre), centre)
    np.testing.assert_array_equal(flip_hand(flip_hand(vol)), vol)


def test_transform_map_hot_voxel_rotation_and_shift():
    L = 32
    c = L // 2
    vol = np.zeros((L, L, L), dtype=np.float32)
    vol[c + 0, c + 1, c + 3] = 1.0  # p = (x, y, z) = (3, 1, 0)
    Rz90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # counter-clockwise
    out = transform_map(vol, Rz90)  # V'(u) = V(Gᵀu): the voxel moves to G·p = (−1, 3, 0)
    assert out[c + 0, c + 3, c - 1] == pytest.approx(1.0, abs=1e-5)
    assert out.sum() == pytest.approx(1.0, abs=1e-5)
    out = transform_map(vol, np.eye(3), shift=(2.0, -1.0, 4.0))  # moves by +t
    assert out[c + 4, c + 0, c + 5] == pytest.approx(1.0, abs=1e-5)


def test_projection_conventions_rotated_and_mirrored_maps():
    """Images of V with pose A equal images of V∘Gᵀ with A·Gᵀ and of the mirror with J·A·J."""
    L = 40
    smooth = [(c, 1.5 * s, a) for c, s, a in BLOBS]  # wide blobs: trilinear resampling is ~exact
    vol = blob_map(L, smooth)
    rng = np.random.default_rng(3)
    G = euler_to_matrix(30, 60, 120)
    for A in random_rotations(3, rng):
        truth = blob_projection(L, A, smooth)
        err = lambda img: np.abs(img - truth).max() / truth.max()  # noqa: E731
        # trilinear resampling costs ~2 % per interpolation; a wrong convention costs > 10 %
        assert err(project(vol, A)) < 0.03
        assert err(project(transform_map(vol, G), A @ G.T)) < 0.06
        assert err(project(flip_hand(vol), J @ A @ J)) < 0.03
        assert err(project(transform_map(vol, G), A @ G)) > 0.1
        assert err(project(flip_hand(vol), A)) > 0.1


def test_rotation_grid_covers_so3():
    grid = rotation_grid(15.0)
    probes = random_rotations(100, np.random.default_rng(4))
    nearest = geodesic_distance_deg(probes[:, None], grid[None]).min(axis=1)
    assert nearest.max() < 15.0


@pytest.mark.parametrize("hand", ["same", "flipped"])
def test_align_recovers_rotation_shift_and_hand(hand):
    L = 32
    vol = blob_map(L)
    G = euler_to_matrix(30, 60, 120)
    t = np.array([1.5, -2.0, 0.7])
    mov = transform_map(vol, G.T)  # mov(p) = vol(G·p): undone by rotating with G
    if hand == "flipped":
        mov = flip_hand(mov)
    ref = transform_map(vol, np.eye(3), shift=t)
    al = align_maps(ref, mov, apix=2.0)
    assert al.hand == hand
    assert geodesic_distance_deg(al.rotation, G) < 1.5
    np.testing.assert_allclose(al.shift, t, atol=0.3)
    assert al.score > 0.98
    np.testing.assert_allclose(al.aligned, transform_map(mov, al.rotation, al.shift, al.hand))


def test_align_refines_from_init_without_global_search():
    L = 32
    vol = blob_map(L)
    G = euler_to_matrix(-50, 100, 10)
    mov = transform_map(vol, G.T)
    start = euler_to_matrix(-44, 105, 14)
    al = align_maps(vol, mov, init=(start, "same"), global_search=False)
    assert al.hand == "same" and geodesic_distance_deg(al.rotation, G) < 1.5
