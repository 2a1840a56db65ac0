"""Preprocessing: Fourier crop against analytically sampled cosines, masks, statistics, polarity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cryoai.data.particles import load_particles
from cryoai.data.preprocess import (circular_mask, cropped_apix, dataset_statistics, fourier_crop,
                                    guess_polarity, invert_contrast)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared test data absent")

# (kx, ky, amplitude, phase) of a band-limited image: every |k| < new_box / 2
WAVES = [(0, 0, 1.5, 0.0), (1, 0, 1.0, 0.3), (2, 3, 0.7, 1.1), (-3, 1, 0.5, -0.4), (4, -2, 0.3, 2.0)]


def cosines(n: int, spacing: float, L: int) -> np.ndarray:
    """The image sum of cos(2π k·(x − centre)/L + φ) sampled at centre + (j − n//2)·spacing."""
    u = (np.arange(n) - n // 2) * spacing
    y, x = np.meshgrid(u, u, indexing="ij")
    return sum(a * np.cos(2 * np.pi * (kx * x + ky * y) / L + p) for kx, ky, a, p in WAVES)


@pytest.mark.parametrize("L, n", [(64, 32), (65, 33), (64, 33), (65, 32), (48, 16)])
def test_crop_of_band_limited_image_equals_coarse_sampling(L, n):
    image = cosines(L, 1.0, L)
    expected = cosines(n, L / n, L)
    got = fourier_crop(image[None], n)[0]
    np.testing.assert_allclose(got, expected, atol=1e-10)
    assert got.mean() == pytest.approx(image.mean(), abs=1e-10)
    assert cropped_apix(1.5, L, n) == pytest.approx(1.5 * L / n)


def test_crop_keeps_mean_of_arbitrary_images_and_torch_matches_numpy():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((3, 40, 40)).astype(np.float32) + 2.0
    out = fourier_crop(images, 20)
    assert out.dtype == np.float32 and out.shape == (3, 20, 20)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), images.mean(axis=(1, 2)), rtol=1e-5)
    out_t = fourier_crop(torch.from_numpy(images), 20)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), out, atol=1e-5)
    np.testing.assert_allclose(fourier_crop(images, 40), images, atol=1e-5)


def test_circular_mask():
    hard = circular_mask(9, 2.0)
    assert hard[4, 4] == 1 and hard[4, 6] == 1 and hard[4, 7] == 0 and hard.sum() == 13
    soft = circular_mask(32, 8.0, 4.0)
    assert soft[16, 16 + 8] == 1 and soft[16, 16 + 10] == pytest.approx(0.5) and soft[16, 16 + 12] == 0
    assert soft.dtype == np.float32 and np.all((soft >= 0) & (soft <= 1))


def test_invert_contrast():
    images = np.arange(4.0).reshape(1, 2, 2)
    np.testing.assert_array_equal(invert_contrast(images), -images)


@needs_data
def test_statistics_match_direct_computation():
    p = load_particles(DATA / "sim_toy_cryodrgn/toy_projections.star", apix=1.0)
    mean, std = dataset_statistics(p, n_sample=50, seed=3)
    rows = np.sort(np.random.default_rng(3).choice(len(p), 50, replace=False))
    reference = p.images(rows).astype(np.float64)
    assert mean == pytest.approx(reference.mean()) and std == pytest.approx(reference.std())


@needs_data
@pytest.mark.parametrize("name, expected", [
    ("real_aspire_80S_17ptcl/sample_particles_relion30.star", "bright"),  # RELION-extracted
    ("real_empiar10076_7ptcl/empiar_10076_7.star", "dark"),  # README: not inverted
    ("sim_empiar10076_classDE_32/10076_classD_32_clean.star", "bright"),  # projections of a map
])
def test_polarity_guess(name, expected):
    assert guess_polarity(load_particles(DATA / name)) == expected
