"""The image formation model against independent computations: explicit DFT sums for the centred
FFT helpers, real-space projections of analytic Gaussians (rotated by evaluating them at Aᵀ·r),
the hand-predicted position of an off-centre point, and back-projection of clean projections."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import correlation
from cryoai.geometry.grids import (
    fft2_centered,
    fft3_centered,
    freq_grid_2d,
    half_plane_disc,
    ifft2_centered,
    ifft3_centered,
)
from cryoai.geometry.rotations import euler_to_matrix, random_rotations
from cryoai.physics.backprojection import backproject, confine_to_box, reconstruct_in_box, wiener_reconstruct
from cryoai.physics.image_model import (factored_residuals, image_factors, model_power, render_images, render_spectra,
                                        rescaled_residuals, slice_factors, squared_residuals)
from cryoai.physics.shifts import origin_phase, translation_phase
from cryoai.physics.slicing import SpectrumVolume, fourier_map, sample_grid, slice_coordinates



def centred_dft_2d(img: np.ndarray) -> np.ndarray:
    """F[ky, kx] = Σ f[y, x]·exp(−2πi (kx (x − c) + ky (y − c)) / L), c = L//2, k = index − c."""
    L = img.shape[-1]
    c = L // 2
    n = np.arange(L) - c
    W = np.exp(-2j * np.pi * np.outer(n, n) / L)  # W[k, x]
    return W @ img @ W.T


# --- analytic Gaussians --------------------------------------------------------------------------

class Gaussians:
    """A smooth asymmetric map: a sum of anisotropic 3D Gaussians (positions in pixels from the
    centre voxel). Its projection along z after rotation by A is again a sum of 2D Gaussians."""

    def __init__(self, seed: int = 1, n: int = 4, spread: float = 5.0):
        rng = np.random.default_rng(seed)
        self.centres = rng.uniform(-spread, spread, (n, 3))
        self.amps = rng.uniform(0.5, 1.5, n)
        self.covs = []
        for _ in range(n):
            Q = np.linalg.qr(rng.standard_normal((3, 3)))[0]
            self.covs.append(Q @ np.diag(rng.uniform(1.5, 3.0, 3) ** 2) @ Q.T)

    def __call__(self, r: np.ndarray) -> np.ndarray:
        """Density at points r (..., 3) = (x, y, z)."""
        out = np.zeros(r.shape[:-1])
        for a, m, C in zip(self.amps, self.centres, self.covs):
            d = r - m
            out += a * np.exp(-0.5 * np.einsum("...i,ij,...j->...", d, np.linalg.inv(C), d))
        return out

    def voxels(self, box: int) -> np.ndarray:
        """The map on a (z, y, x) grid, voxel L//2 at the origin."""
        g = np.arange(box) - box // 2
        Z, Y, X = np.meshgrid(g, g, g, indexing="ij")
        return self(np.stack([X, Y, Z], -1))

    def real_space_projection(self, A: np.ndarray, box: int) -> np.ndarray:
        """P(x, y) = Σ_z V(Aᵀ·[x, y, z]), the map rotated by evaluation, summed along z."""
        g = np.arange(box) - box // 2
        Z, Y, X = np.meshgrid(g, g, g, indexing="ij")
        return self(np.stack([X, Y, Z], -1) @ A).sum(0)  # r @ A = Aᵀ·r for row vectors

    def analytic_projection(self, A: np.ndarray, box: int, origin_px=(0.0, 0.0)) -> np.ndarray:
        """∫ V(Aᵀ·[x, y, z]) dz in closed form: Gaussians at (A·m)_xy − origin with covariance
        (A C Aᵀ)_xy and mass a·(2π)^{3/2}·√det C."""
        g = np.arange(box) - box // 2
        Y, X = np.meshgrid(g, g, indexing="ij")
        q = np.stack([X, Y], -1).astype(float)
        out = np.zeros((box, box))
        for a, m, C in zip(self.amps, self.centres, self.covs):
            mu = (A @ m)[:2] - np.asarray(origin_px)
            C2 = (A @ C @ A.T)[:2, :2]
            mass = a * (2 * np.pi) ** 1.5 * np.sqrt(np.linalg.det(C))
            d = q - mu
            out += mass / (2 * np.pi * np.sqrt(np.linalg.det(C2))) * np.exp(
                -0.5 * np.einsum("...i,ij,...j->...", d, np.linalg.inv(C2), d))
        return out


POSES = np.concatenate([
    euler_to_matrix([0, 30, 200, 100, 0], [0, 60, 90, 170, 180], [0, -40, 90, 10, 25]),
    random_rotations(3, np.random.default_rng(5)),
])


# --- grids and shifts ----------------------------------------------------------------------------

@pytest.mark.parametrize("box", [6, 7])
def test_fft2_centered_is_the_centred_dft(box):
    """fft2_centered equals the explicit DFT sum with the origin at pixel L//2, and ifft2 inverts it."""
    img = np.random.default_rng(box).standard_normal((box, box))
    got = fft2_centered(torch.from_numpy(img)).numpy()
    np.testing.assert_allclose(got, centred_dft_2d(img), atol=1e-10)
    np.testing.assert_allclose(ifft2_centered(torch.from_numpy(got)).numpy(), img, atol=1e-12)


@pytest.mark.parametrize("box", [8, 9])
def test_fft3_centered_hermitian_and_inverse(box):
    """A real map's centred 3D DFT has V̂(−k) = conj V̂(k) about index L//2, DC = sum; ifft3 inverts it."""
    vol = np.random.default_rng(box).standard_normal((box,) * 3)
    F = fft3_centered(torch.from_numpy(vol)).numpy()
    c = box // 2
    assert F[c, c, c] == pytest.approx(vol.sum())
    lo = 1 if box % 2 == 0 else 0  # for even L the −L/2 plane has no +L/2 partner
    inner = F[lo:, lo:, lo:]
    np.testing.assert_allclose(inner, np.conj(inner[::-1, ::-1, ::-1]), atol=1e-9)
    np.testing.assert_allclose(ifft3_centered(torch.from_numpy(F)).numpy(), vol, atol=1e-12)


@pytest.mark.parametrize("box", [8, 9])
def test_freq_grid_2d_layout(box):
    """freq_grid_2d[y, x] = ((x − L//2)/L, (y − L//2)/L): kx along the last axis, DC at L//2."""
    f = freq_grid_2d(box).numpy()
    c = box // 2
    assert f.shape == (box, box, 2)
    np.testing.assert_allclose(f[c, c], [0, 0])
    np.testing.assert_allclose(f[c, c + 1], [1 / box, 0])
    np.testing.assert_allclose(f[c + 1, c], [0, 1 / box])
    np.testing.assert_allclose(f[0, 0], [-c / box, -c / box])


@pytest.mark.parametrize("box, radius", [(8, 3.0), (9, 4.0), (16, 8.0)])
def test_half_plane_disc_by_enumeration(box, radius):
    """half_plane_disc = the pixels with |f| ≤ r and (fx > 0 or fx = 0, fy ≥ 0), sorted by radius;
    together with their mirrors −f they tile the disc exactly once (DC once)."""
    idx = half_plane_disc(box, radius).numpy()
    c = box // 2
    expected = {(y, x) for y in range(box) for x in range(box)
                if (x - c) ** 2 + (y - c) ** 2 <= radius**2 and ((x - c) > 0 or (x == c and y >= c))}
    got = [(int(i) // box, int(i) % box) for i in idx]
    assert set(got) == expected and len(got) == len(expected)
    r2 = [(x - c) ** 2 + (y - c) ** 2 for y, x in got]
    assert r2 == sorted(r2)
    if radius < box / 2:
        disc = {(y, x) for y in range(box) for x in range(box) if (x - c) ** 2 + (y - c) ** 2 <= radius**2}
        mirrored = {(2 * c - y, 2 * c - x) for y, x in got}
        assert set(got) | mirrored == disc and set(got) & mirrored == {(c, c)}


def test_translation_phase_is_a_roll():
    """Multiplying the spectrum by exp(−2πi k·d) moves the image content by +d (integer d = np.roll);
    origin_phase(o) moves it by −o."""
    box = 16
    img = np.random.default_rng(0).standard_normal((box, box))
    freqs = freq_grid_2d(box).reshape(-1, 2)
    spectrum = fft2_centered(torch.from_numpy(img).float()).reshape(-1)
    d = torch.tensor([[3.0, -2.0]])
    moved = ifft2_centered((spectrum * translation_phase(freqs, d)[0]).reshape(box, box)).numpy()
    np.testing.assert_allclose(moved, np.roll(img, shift=(-2, 3), axis=(0, 1)), atol=1e-5)
    back = ifft2_centered((spectrum * origin_phase(freqs, d)[0]).reshape(box, box)).numpy()
    np.testing.assert_allclose(back, np.roll(img, shift=(2, -3), axis=(0, 1)), atol=1e-5)


# --- slicing -------------------------------------------------------------------------------------

def test_slice_coordinates_are_row_vector_times_A():
    """The central slice of pose A samples [kx, ky, 0] @ A = Aᵀ·[kx, ky, 0]."""
    A = random_rotations(3, np.random.default_rng(0))
    k = np.random.default_rng(1).uniform(-0.5, 0.5, (10, 2))
    got = slice_coordinates(torch.from_numpy(A), torch.from_numpy(k)).numpy()
    for Ai, gi in zip(A, got):
        np.testing.assert_allclose(gi, np.stack([Ai.T @ [kx, ky, 0.0] for kx, ky in k]), atol=1e-12)


def test_sample_grid_index_order_and_linearity():
    """sample_grid reads grid[z, y, x] at index (x, y, z), interpolates linearly between voxels, 0 outside."""
    rng = np.random.default_rng(0)
    grid = rng.standard_normal((5, 6, 7)) + 1j * rng.standard_normal((5, 6, 7))
    g = torch.from_numpy(grid).to(torch.complex64)
    pts = torch.tensor([[1.0, 2.0, 3.0], [6.0, 5.0, 4.0], [2.5, 1.0, 0.0], [2.0, 1.0, 0.25], [-3.0, 0.0, 0.0]])
    got = sample_grid(g, pts).numpy()
    np.testing.assert_allclose(got[0], grid[3, 2, 1], atol=1e-6)
    np.testing.assert_allclose(got[1], grid[4, 5, 6], atol=1e-6)
    np.testing.assert_allclose(got[2], 0.5 * (grid[0, 1, 2] + grid[0, 1, 3]), atol=1e-6)
    np.testing.assert_allclose(got[3], 0.75 * grid[0, 1, 2] + 0.25 * grid[1, 1, 2], atol=1e-6)
    assert got[4] == 0


def test_spectrum_volume_frequency_to_index():
    """SpectrumVolume of size D reads frequency k (cycles/pixel, (x, y, z)) at index k·D + D//2."""
    rng = np.random.default_rng(1)
    D = 8
    grid = rng.standard_normal((D, D, D)) + 1j * rng.standard_normal((D, D, D))
    volume = SpectrumVolume(torch.from_numpy(grid))
    k = torch.tensor([[0.0, 0.0, 0.0], [1 / D, -2 / D, 3 / D], [-0.5, 0.25, 0.0]])
    got = volume(k).numpy()
    np.testing.assert_allclose(got, [grid[4, 4, 4], grid[7, 2, 5], grid[4, 6, 0]], atol=1e-6)


@pytest.mark.parametrize("box", [16, 15])
def test_identity_pose_renders_the_sum_over_z(box):
    """At A = I the padded map's central slice sits on grid points, so the image is exactly Σ_z V."""
    vol = np.random.default_rng(0).standard_normal((box,) * 3).astype(np.float32)
    img = render_images(fourier_map(torch.from_numpy(vol)), torch.eye(3)[None], box, 1.0)[0].numpy()
    np.testing.assert_allclose(img, vol.sum(0), atol=1e-4)


# --- Fourier-slice theorem vs real-space projection ----------------------------------------------

@pytest.mark.parametrize("box", [32, 31])
def test_fourier_slice_matches_real_space_projection(box):
    """render_images(fourier_map(V), A) ≈ Σ_z V(Aᵀ·[x, y, z]) of analytic Gaussians (corr > 0.999)
    and ≈ their closed-form 2D projection, in amplitude too."""
    g = Gaussians(seed=1)
    fm = fourier_map(torch.from_numpy(g.voxels(box)).float())
    images = render_images(fm, torch.from_numpy(POSES), box, 1.0).numpy()
    for A, img in zip(POSES, images):
        real = g.real_space_projection(A, box)
        exact = g.analytic_projection(A, box)
        assert correlation(real, exact) > 0.99999  # the reference itself: sum over z = integral
        assert correlation(img, real) > 0.999
        assert np.abs(img - exact).max() < 0.08 * exact.max()  # trilinear interpolation at pad 2


def test_fourier_slice_with_origin_and_pixel_size():
    """An origin o (Å) moves the projection to centre − o/apix: matches the analytic projection."""
    g = Gaussians(seed=2)
    box, apix = 32, 2.5
    origin_A = np.array([[6.0, -3.5], [-2.5, 8.0]])
    fm = fourier_map(torch.from_numpy(g.voxels(box)).float())
    images = render_images(fm, torch.from_numpy(POSES[1:3]), box, apix, None, torch.from_numpy(origin_A)).numpy()
    for A, o, img in zip(POSES[1:3], origin_A, images):
        exact = g.analytic_projection(A, box, o / apix)
        assert correlation(img, exact) > 0.999
        assert np.abs(img - exact).max() < 0.08 * exact.max()


# --- hot voxel: where does an off-centre point land ----------------------------------------------

def peak_position(img: np.ndarray, w: int = 3) -> np.ndarray:
    """(x, y) centroid of the positive part of a (2w+1)² window around the maximum."""
    iy, ix = np.unravel_index(np.argmax(img), img.shape)
    sub = np.clip(img[iy - w: iy + w + 1, ix - w: ix + w + 1], 0, None)
    yy, xx = np.mgrid[-w: w + 1, -w: w + 1]
    return np.array([ix + (sub * xx).sum() / sub.sum(), iy + (sub * yy).sum() / sub.sum()])


def narrow_blob(box: int, u, sigma: float = 1.2) -> np.ndarray:
    g = np.arange(box) - box // 2
    Z, Y, X = np.meshgrid(g, g, g, indexing="ij")
    return np.exp(-((X - u[0]) ** 2 + (Y - u[1]) ** 2 + (Z - u[2]) ** 2) / (2 * sigma**2)).astype(np.float32)


U = (5.0, -3.0, 7.0)
# (rot, tilt, psi) → where U lands, worked out by hand from A = R_z(ψ)R_y(θ)R_z(φ):
HAND = [
    ((0, 0, 0), (5, -3)),      # A = I
    ((0, 0, 90), (-3, -5)),    # R_z(90) = [[0, 1, 0], [−1, 0, 0], [0, 0, 1]]: (x, y) → (y, −x)
    ((90, 0, 0), (-3, -5)),    # tilt 0: rot acts like psi
    ((0, 90, 0), (-7, -3)),    # R_y(90) = [[0, 0, −1], [0, 1, 0], [1, 0, 0]]: x ← −z
    ((0, 90, 90), (-3, 7)),    # R_z(90)·R_y(90)
    ((0, 180, 0), (-5, -3)),   # R_y(180) = diag(−1, 1, −1)
]


@pytest.mark.parametrize("box", [32, 33])
@pytest.mark.parametrize("origin_px", [(0.0, 0.0), (2.3, -1.7)])
def test_point_lands_where_hand_geometry_says(box, origin_px):
    """A blob at u from voxel L//2 projects to pixel L//2 + (A·u)_xy − origin (within 0.5 px),
    with the (A·u)_xy computed by hand for tilt 0/90/180 and psi 90, and A·u for random poses."""
    c = box // 2
    fm = fourier_map(torch.from_numpy(narrow_blob(box, U)))
    angles = np.array([h[0] for h in HAND], dtype=float)
    A_hand = euler_to_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    A_rand = random_rotations(4, np.random.default_rng(7))
    A = np.concatenate([A_hand, A_rand])
    origins = np.tile(np.asarray(origin_px), (len(A), 1))
    images = render_images(fm, torch.from_numpy(A), box, 1.0, None, torch.from_numpy(origins)).numpy()
    expected = [np.array(h[1], float) for h in HAND] + [(Ai @ U)[:2] for Ai in A_rand]
    for img, e in zip(images, expected):
        np.testing.assert_allclose(peak_position(img), c + e - np.asarray(origin_px), atol=0.5)


def test_origin_recentres_a_displaced_particle():
    """A particle whose projection sits at centre + d (d = (A·u)_xy) is centred by origin = d (pixels × apix in Å)."""
    box, apix = 32, 3.0
    A = euler_to_matrix(40.0, 70.0, -20.0)
    d = (A @ U)[:2]
    fm = fourier_map(torch.from_numpy(narrow_blob(box, U)))
    img = render_images(fm, torch.from_numpy(A[None]), box, apix, None, torch.from_numpy(d[None] * apix))[0].numpy()
    np.testing.assert_allclose(peak_position(img), [box // 2, box // 2], atol=0.3)


def test_render_spectra_is_the_dft_of_render_images():
    """render_spectra (centred, unnormalised) is the centred DFT of the rendered image."""
    box = 16
    fm = fourier_map(torch.from_numpy(Gaussians(seed=3, spread=3).voxels(box)).float())
    A = torch.from_numpy(POSES[1:2])
    freqs = freq_grid_2d(box).reshape(-1, 2)
    spectra = render_spectra(fm, A.float(), freqs, None, torch.tensor([[1.5, -0.5]]))
    img = render_images(fm, A, box, 2.0, None, torch.tensor([[3.0, -1.0]]))[0].numpy()
    np.testing.assert_allclose(spectra.reshape(box, box).numpy(), centred_dft_2d(img.astype(np.float64)),
                               atol=1e-3 * spectra.abs().max().item())


# --- back-projection (basic contract only) -------------------------------------------------------

def test_backprojection_of_clean_projections_recovers_the_map():
    """Clean projections at known poses, back-projected and Wiener-inverted, correlate > 0.95 with the map."""
    box, n = 24, 150
    vol = Gaussians(seed=4, spread=4).voxels(box)
    fm = fourier_map(torch.from_numpy(vol).float())
    R = torch.from_numpy(random_rotations(n, np.random.default_rng(8)))
    images = render_images(fm, R, box, 1.0)
    freqs = freq_grid_2d(box).reshape(-1, 2)
    numerator, denominator = backproject(fft2_centered(images).reshape(n, -1), R, freqs, box)
    rec = ifft3_centered(wiener_reconstruct(numerator, denominator)).numpy()
    assert rec.shape == (box,) * 3
    assert correlation(rec, vol) > 0.95


def test_reconstruct_in_box_keeps_the_map_within_its_support():
    """At oversampling 2 the Wiener map holds replicas outside the central box; reconstruct_in_box
    zeroes everything beyond the support sphere (0.4·box), keeps the map inside (corr > 0.95),
    and per shell it equals the per-shell Wiener map confined the same way."""
    box, n = 16, 120
    vol = Gaussians(seed=4, spread=2.5).voxels(box)
    fm = fourier_map(torch.from_numpy(vol).float())
    R = torch.from_numpy(random_rotations(n, np.random.default_rng(8)))
    freqs = freq_grid_2d(box).reshape(-1, 2)
    spectra = render_spectra(fm, R.float(), freqs)
    numerator, denominator = backproject(spectra, R, freqs, box, oversample=2)
    rec = ifft3_centered(reconstruct_in_box(numerator, denominator, box, 0.01, support_fraction=0.4)).numpy()
    dist = np.sqrt(sum(g**2 for g in np.meshgrid(*[np.arange(2 * box) - box] * 3, indexing="ij")))
    assert np.abs(rec[dist > 0.4 * box]).max() < 1e-4 * np.abs(rec).max()
    start = box // 2
    assert correlation(rec[start : start + box, start : start + box, start : start + box], vol) > 0.95
    per_shell = reconstruct_in_box(numerator, denominator, box, 0.05, per_shell=True, support_fraction=0.4)
    expected = confine_to_box(wiener_reconstruct(numerator, denominator, 0.05, per_shell=True), box, 0.4)
    torch.testing.assert_close(per_shell, expected)


# --- the misfit of many hypotheses at once -------------------------------------------------------

def test_factored_errors_equal_direct_squared_errors():
    """The one-matrix-product form equals |x − c·S_t·P|² summed directly, with phases shared by
    the images or per image (a flipped imaginary sign in the factors fails this)."""
    g = torch.Generator().manual_seed(0)

    def cplx(*shape):
        return torch.complex(torch.randn(*shape, generator=g), torch.randn(*shape, generator=g))

    n, t, r, k = 3, 4, 5, 7
    x, c, proj = cplx(n, k), torch.randn(n, k, generator=g), cplx(r, k)
    phases = torch.exp(1j * torch.rand(t, k, generator=g) * 6.3)
    direct = ((x[:, None, None] - c[:, None, None] * phases[None, :, None] * proj[None, None]).abs() ** 2).sum(-1)
    factored = factored_residuals(image_factors(x, c, phases), slice_factors(proj)) + (x.abs() ** 2).sum(1)[:, None, None]
    assert torch.allclose(factored, direct, rtol=1e-4, atol=1e-3)
    # per image: phases (n, T, K) and slices (n, R, K), as in the local search
    phases_n, proj_n = torch.exp(1j * torch.rand(n, t, k, generator=g) * 6.3), cplx(n, r, k)
    direct = ((x[:, None, None] - c[:, None, None] * phases_n[:, :, None] * proj_n[:, None]).abs() ** 2).sum(-1)
    assert torch.allclose(squared_residuals(x, c, phases_n, proj_n), direct, rtol=1e-4, atol=1e-3)


def test_squared_residuals_are_the_image_models_residual():
    """For every (image, origin, rotation): squared_residuals of the slices, CTFs and origin
    phases equals Σ|x − render_spectra(volume, R, freqs, CTF, origin)|² computed pose by pose."""
    gen = torch.Generator().manual_seed(3)
    box = 12
    volume = fourier_map(torch.rand(box, box, box, generator=gen, dtype=torch.float64).float())
    freqs = freq_grid_2d(box).reshape(-1, 2)[half_plane_disc(box, box // 2)]
    n, k = 3, len(freqs)
    rotations = torch.from_numpy(random_rotations(5, np.random.default_rng(3))).float()
    origins = torch.tensor([[0.0, 0.0], [1.5, -0.5], [-2.0, 0.75], [0.3, 2.2]])
    x = torch.complex(torch.randn(n, k, generator=gen), torch.randn(n, k, generator=gen)) * 30
    c = torch.rand(n, k, generator=gen) * 2 - 1
    direct = torch.empty(n, len(origins), len(rotations))
    for i in range(n):
        for t in range(len(origins)):
            model = render_spectra(volume, rotations, freqs, c[i].expand(len(rotations), k),
                                   origins[t].expand(len(rotations), 2))
            direct[i, t] = ((x[i] - model).abs() ** 2).sum(-1)
    slices = volume(slice_coordinates(rotations, freqs))
    fast = squared_residuals(x, c, origin_phase(freqs, origins), slices)
    torch.testing.assert_close(fast, direct, rtol=1e-4, atol=0)


def test_rescaled_residuals_are_the_misfit_at_each_images_least_squares_amplitude():
    """Per (image, origin, rotation), against numpy's least-squares amplitude a of x ≈ a·m over
    the real and imaginary parts (0 where it is negative): rescaled_residuals + |x|² is
    |x − a·m|²; an image that is 3 × a projection fits it exactly; shared and per-image slices agree."""
    gen = torch.Generator().manual_seed(4)
    box = 12
    volume = fourier_map(torch.rand(box, box, box, generator=gen, dtype=torch.float64).float())
    freqs = freq_grid_2d(box).reshape(-1, 2)[half_plane_disc(box, box // 2)]
    n, k = 3, len(freqs)
    rotations = torch.from_numpy(random_rotations(5, np.random.default_rng(5))).float()
    origins = torch.tensor([[0.0, 0.0], [1.5, -0.5], [-2.0, 0.75]])
    c = torch.rand(n, k, generator=gen) * 2 - 1
    x = torch.complex(torch.randn(n, k, generator=gen), torch.randn(n, k, generator=gen)) * 30
    x[0] = 3 * render_spectra(volume, rotations[:1], freqs, c[:1], origins[1:2])[0]  # 3 × pose (1, 0)
    slices = volume(slice_coordinates(rotations, freqs))
    phases = origin_phase(freqs, origins)
    err = factored_residuals(image_factors(x, c, phases), slice_factors(slices))
    fast = rescaled_residuals(err, model_power(c, slices)) + (x.abs() ** 2).sum(-1)[:, None, None]
    direct = np.empty((n, len(origins), len(rotations)))
    for i in range(n):
        for t in range(len(origins)):
            for r in range(len(rotations)):
                m = render_spectra(volume, rotations[r : r + 1], freqs, c[i : i + 1], origins[t : t + 1])[0]
                mv = np.concatenate([m.real.numpy(), m.imag.numpy()]).astype(np.float64)
                xv = np.concatenate([x[i].real.numpy(), x[i].imag.numpy()]).astype(np.float64)
                a = max(np.linalg.lstsq(mv[:, None], xv, rcond=None)[0][0], 0.0)
                direct[i, t, r] = ((xv - a * mv) ** 2).sum()
    np.testing.assert_allclose(fast.numpy(), direct, rtol=1e-3, atol=1.0)  # float32 against |x|² ~ 1e5
    assert float(fast[0, 1, 0]) < 1e-3 * float((x[0].abs() ** 2).sum())
    per_image = model_power(c, slices[None].expand(n, -1, -1))
    torch.testing.assert_close(per_image, model_power(c, slices))
