"""FSC and resolution against independent constructions (full complex FFT, analytic curves)."""

from __future__ import annotations

import numpy as np
import pytest

from cryoai.eval.fsc import auto_mask, fsc, resolution, shell_frequencies, sphere_mask


def _smooth_random_map(L: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = rng.standard_normal((L, L, L))
    # mild 1/k amplitude fall-off so every shell holds power, built with the full FFT
    k = np.fft.fftfreq(L) * L
    kz, ky, kx = np.meshgrid(k, k, k, indexing="ij")
    amp = 1.0 / (1.0 + np.sqrt(kx**2 + ky**2 + kz**2))
    return np.real(np.fft.ifftn(np.fft.fftn(vol) * amp))


def test_fsc_of_map_with_itself_is_one_to_nyquist():
    a = _smooth_random_map(32, 0)
    curve = fsc(a, a)
    assert curve.shape == (17,)
    np.testing.assert_allclose(curve, 1.0, atol=1e-10)
    res_A, res_px = resolution(curve, 0.143, 32, 1.5)
    assert res_px == pytest.approx(2.0)
    assert res_A == pytest.approx(3.0)
    # a mask applied to both keeps it at 1
    np.testing.assert_allclose(fsc(a, a, mask=sphere_mask(32)), 1.0, atol=1e-10)


@pytest.mark.parametrize("L,r0", [(32, 6), (33, 9), (40, 12)])
def test_fsc_against_hard_lowpass_crosses_at_cutoff(L, r0):
    a = _smooth_random_map(L, 1)
    # independent hard spherical cut-off on the full, centred complex FFT
    F = np.fft.fftshift(np.fft.fftn(a))
    i = np.arange(L) - L // 2
    kz, ky, kx = np.meshgrid(i, i, i, indexing="ij")
    F[np.sqrt(kx**2 + ky**2 + kz**2) > r0 + 0.5] = 0
    b = np.real(np.fft.ifftn(np.fft.ifftshift(F)))
    curve = fsc(a, b)
    assert np.all(curve[: r0 + 1] > 0.9)
    _, res_px = resolution(curve, 0.5, L, 1.0)
    assert abs(L / res_px - r0) <= 1.0


def test_fsc_of_independent_noise_is_near_zero():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 32, 32, 32))
    curve = fsc(a, b)
    assert np.abs(curve[4:]).max() < 0.3
    assert abs(curve[4:].mean()) < 0.05
    res_A, res_px = resolution(curve, 0.143, 32, 1.0)
    assert res_px > 6


def test_resolution_interpolates_linearly_and_converts_units():
    curve = np.array([1.0, 0.95, 0.8, 0.6, 0.4, 0.1, 0.0, 0.0, 0.0])  # box 16
    # 0.5 crossed between shells 3 (0.6) and 4 (0.4): r = 3.5 → 16/3.5 px
    res_A, res_px = resolution(curve, 0.5, 16, 2.0)
    assert res_px == pytest.approx(16 / 3.5)
    assert res_A == pytest.approx(2.0 * 16 / 3.5)
    # 0.143 between shells 4 (0.4) and 5 (0.1): r = 4 + 0.257/0.3
    _, res_px = resolution(curve, 0.143, 16, 2.0)
    assert res_px == pytest.approx(16 / (4 + 0.257 / 0.3))
    # frequency axis: shell r at r / (L·apix)
    np.testing.assert_allclose(shell_frequencies(16, 2.0)[[0, 8]], [0.0, 0.25])


def test_auto_mask_covers_the_object_with_a_soft_edge():
    L = 32
    i = np.arange(L) - L // 2
    z, y, x = np.meshgrid(i, i, i, indexing="ij")
    vol = np.exp(-((x - 3) ** 2 + y**2 + z**2) / (2 * 3.0**2))
    m = auto_mask(vol, apix=2.0)
    assert m.shape == vol.shape and m.min() >= 0 and m.max() <= 1
    assert m[L // 2, L // 2, L // 2 + 3] == pytest.approx(1.0)
    assert m[0, 0, 0] == pytest.approx(0.0, abs=1e-6)
    assert 0 < np.mean((m > 0.01) & (m < 0.99))  # there is a soft edge


def test_mask_from_file_and_specs(tmp_path):
    from cryoai.errors import InputError
    from cryoai.eval.fsc import make_mask
    from cryoai.io.mrc import write_map

    vol = _smooth_random_map(32, 5).astype(np.float32)
    write_map(tmp_path / "mask.mrc", np.full((32, 32, 32), 2.0, np.float32), 1.0)
    np.testing.assert_array_equal(make_mask(str(tmp_path / "mask.mrc"), [vol], 1.0), 1.0)  # clipped to [0, 1]
    assert make_mask(None, [vol], 1.0) is None
    assert make_mask("sphere", [vol], 1.0).shape == vol.shape
    write_map(tmp_path / "small.mrc", np.ones((24, 24, 24), np.float32), 1.0)
    with pytest.raises(InputError, match="small.mrc"):
        make_mask(str(tmp_path / "small.mrc"), [vol], 1.0)
    with pytest.raises(InputError, match="nope"):
        make_mask("nope", [vol], 1.0)
