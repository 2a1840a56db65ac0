"""The noise model (data/noise_spectrum.py): the background estimate returns the simulated
spectrum (white: p = σ²; coloured: within 10 % per shell), also through a particle set with a
particle in the middle; whitening makes coloured noise white, and a flat spectrum whitens by
exactly 1, so white-noise runs are unchanged."""

from __future__ import annotations

from types import SimpleNamespace

import mrcfile
import numpy as np
import pandas as pd
import pytest
import torch

from cryoai.data.noise_spectrum import (
    NoiseSpectrum,
    background_power,
    estimate_noise_spectrum,
    optics_groups,
    shell_grid,
)
from cryoai.data.particles import load_particles
from cryoai.data.training_data import TrainingData
from cryoai.geometry.grids import fft2_centered
from cryoai.physics.noise import coloured_noise

BOX = 64
SHELLS = np.arange(BOX // 2 + 1)
ICE = 0.5 * (1 + 8 * np.exp(-SHELLS / 4.0))  # steep at low frequency, as ice and the detector make it


def test_white_noise_gives_sigma_squared():
    """300 images of white noise (σ = 1.5): every shell within 8 % of σ², their mean within 2 %."""
    images = torch.from_numpy(1.5 * np.random.default_rng(0).standard_normal((300, BOX, BOX)).astype(np.float32))
    p = background_power(images, 0.375 * BOX).numpy()
    assert np.abs(p / 2.25 - 1).max() < 0.08 and abs(p.mean() / 2.25 - 1) < 0.02, np.round(p / 2.25, 3)


def test_coloured_noise_spectrum_within_ten_percent_per_shell():
    """Every shell but the DC term (each image's background offset is removed, p[0] = p[1])."""
    images = torch.from_numpy(coloured_noise((300, BOX, BOX), ICE, np.random.default_rng(1)))
    p = background_power(images, 0.375 * BOX).numpy()
    assert np.abs(p[1:] / ICE[1:] - 1).max() < 0.10 and p[0] == p[1], np.round(p / ICE, 3)


def test_coloured_noise_generator_has_its_spectrum():
    """Unmasked periodogram of the generated noise: the spectrum asked for (the test's own yardstick)."""
    images = torch.from_numpy(coloured_noise((200, 32, 32), ICE[:17], np.random.default_rng(2)))
    power = (fft2_centered(images).abs() ** 2).mean(0) / 32**2
    shells = shell_grid(32).flatten()
    mean = torch.zeros(17).index_add_(0, shells, power.flatten()) / torch.bincount(shells, minlength=17)
    assert np.abs(mean.numpy()[1:] / ICE[1:17] - 1).max() < 0.1


@pytest.fixture(scope="module")
def noisy_set(tmp_path_factory):
    """300 images (box 64, 3 Å/px) of a bright blob (radius ~18 px) in coloured noise, as a bare stack."""
    out = tmp_path_factory.mktemp("coloured")
    g = np.arange(BOX) - BOX // 2
    y, x = np.meshgrid(g, g, indexing="ij")
    blob = (5.0 * np.exp(-(x**2 + y**2) / (2 * 6.0**2))).astype(np.float32)
    noise = coloured_noise((300, BOX, BOX), ICE, np.random.default_rng(3))
    for name, images in (("particles.mrcs", noise + blob), ("noise.mrcs", noise)):
        with mrcfile.new(out / name) as f:
            f.set_data(images)
            f.voxel_size = 3.0
    return out


def test_estimate_from_particles_outside_the_mask(noisy_set):
    """Through TrainingData (normalised by its std): p·std² is the simulated spectrum within 10 %
    per shell (shells ≥ 1); the particle inside the default mask (144 Å) does not leak in."""
    data = TrainingData(load_particles(noisy_set / "particles.mrcs", apix=3.0), BOX, BOX)
    spectrum = estimate_noise_spectrum(data)
    p = spectrum.power[0] * data.std**2
    assert spectrum.power.shape == (1, BOX // 2 + 1) and spectrum.group_ids == [1]
    assert np.abs(p[1:] / ICE[1:] - 1).max() < 0.10, np.round(p / ICE, 3)
    assert "noise spectrum outside a 144 Å mask" in spectrum.summary()


def test_whitened_batches_carry_white_noise(noisy_set):
    """Spectra of the noise alone whitened by the estimate: their shell powers are flat."""
    data = TrainingData(load_particles(noisy_set / "noise.mrcs", apix=3.0), BOX, BOX)
    data.noise = estimate_noise_spectrum(data)
    images = torch.from_numpy(np.stack([np.fft.ifft2(np.fft.ifftshift(s)).real * BOX for s in
                                        data.batch(np.arange(300)).spectra.numpy()])).float()
    p = background_power(images, 0.375 * BOX).numpy()
    assert np.abs(p[1:] / p[1:].mean() - 1).max() < 0.12, np.round(p / p.mean(), 3)


def test_flat_spectrum_whitens_by_exactly_one(tiny_set):
    """p ≡ σ² for any σ²: the whitened batch and its model filter are the unwhitened ones."""
    particles = load_particles(tiny_set / "particles.star")
    data = TrainingData(particles, 16, 16)
    rows = np.array([4, 0, 7])
    plain = data.batch(rows)
    freqs = torch.rand(10, 2) - 0.5
    for sigma2 in (1.0, 4.0):
        data.noise = NoiseSpectrum(np.full((1, 9), sigma2), np.zeros(len(particles), dtype=np.int64), [1], 16,
                                   data.apix, 6.0, [100], [1.0])
        white = data.batch(rows)
        torch.testing.assert_close(white.spectra, plain.spectra, rtol=0, atol=0)
        torch.testing.assert_close(white.model_filter(freqs, data.apix), plain.model_filter(freqs, data.apix))


def test_optics_groups_and_written_table(tmp_path):
    table = pd.DataFrame({"rlnOpticsGroup": [2, 1, 2, 2]})
    rows, ids = optics_groups(SimpleNamespace(table=table))
    assert ids == [1, 2] and rows.tolist() == [1, 0, 1, 1]
    spectrum = NoiseSpectrum(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), rows, ids, 4, 2.0, 1.0, [1, 3], [1.0, 1.0])
    spectrum.write(tmp_path / "noise_spectrum.txt")
    written = np.loadtxt(tmp_path / "noise_spectrum.txt")
    np.testing.assert_allclose(written[:, 1], [0, 1 / 8, 2 / 8])
    np.testing.assert_allclose(written[:, 2:], spectrum.power.T)
    # the heavier group (three particles) weighs three times in p_ref; the filter is √(p_ref / p)
    np.testing.assert_allclose(spectrum.whitening(np.array([1]))[0].numpy() ** 2,
                               spectrum.reference() / spectrum.power[0], rtol=1e-6)


def test_background_fraction_tells_noise_from_a_noise_free_particle():
    """Pure noise: the background holds the image's power per pixel (≈ 1); a noise-free particle
    with nothing outside it: none (0); whitening is chosen only above MIN_BACKGROUND_FRACTION."""
    from cryoai.data.noise_spectrum import MIN_BACKGROUND_FRACTION, background_fraction

    noise = torch.from_numpy(np.random.default_rng(0).standard_normal((50, 32, 32)))
    assert abs(background_fraction(noise, 12.0) - 1.0) < 0.05
    c = torch.arange(32.0) - 16
    blob = torch.exp(-(c[None, :] ** 2 + c[:, None] ** 2) / (2 * 3.0**2)).expand(50, 32, 32)
    assert background_fraction(blob, 12.0) < 1e-6
    assert background_fraction(blob + 0.01 * noise, 12.0) < MIN_BACKGROUND_FRACTION < background_fraction(blob + noise, 12.0)
