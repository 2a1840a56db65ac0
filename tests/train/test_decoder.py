"""The decoder's error (train/decoder.py encode_both) under whitening: a flat noise spectrum of
any level leaves it unchanged, and an estimated spectrum of white noise changes it by a nearly
constant factor per image (the trainer's supervision term is scaled by the error itself, and
Adam is invariant to a constant factor)."""

from __future__ import annotations

import numpy as np
import torch

from cryoai.data.noise_spectrum import NoiseSpectrum, estimate_noise_spectrum
from cryoai.data.particles import load_particles
from cryoai.data.training_data import TrainingData
from cryoai.train.decoder import encode_both, loss_frequencies
from cryoai.train.trainer import build_models
from helpers import tiny_config


def test_white_noise_losses_equal_up_to_a_constant(tiny_set, one_thread):
    particles = load_particles(tiny_set / "particles.star")
    data = TrainingData(particles, 16, 16)
    torch.manual_seed(0)
    encoder, volume = build_models(tiny_config(), "cpu")
    encoder.eval()
    idx, freqs = loss_frequencies(16, 8)
    batch_rows = np.arange(40)

    def errors() -> torch.Tensor:
        with torch.no_grad():
            return encode_both(encoder, volume, data.batch(batch_rows), idx, freqs, data.apix, True, "cpu")[2]

    plain = errors()
    data.noise = NoiseSpectrum(np.full((1, 9), 3.0), np.zeros(len(particles), dtype=np.int64), [1], 16, data.apix, 6, [1], [1.0])
    torch.testing.assert_close(errors(), plain)  # flat p: w ≡ 1 whatever σ²
    # the tiny set's noise is white, but at SNR 10 its phantom reaches beyond an 80 Å mask, so the
    # background holds signal: the level moves (by 0.6), the error per image by one common factor
    data.noise = estimate_noise_spectrum(data, particle_diameter_A=80.0)
    ratio = (errors() / plain).numpy()
    assert ratio.std() < 0.05 * ratio.mean(), ratio
