"""The noise model: white Gaussian noise added to real-space images (after the CTF).

One model for the simulator and for the images the trainer renders (``train/supervision.py``).
Noise drawn in real space is real, so its spectrum is Hermitian: a spectrum with independent
complex noise in every coefficient, of which only the real image is kept, would carry half
the variance asked for.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cryoai.geometry.grids import fft2_centered


def sigma_for_snr(signal_variance: float, snr: float) -> float:
    """Noise standard deviation per pixel for a signal of ``signal_variance`` per pixel at ``snr``
    (signal variance / noise variance, CONVENTIONS.md)."""
    return math.sqrt(signal_variance / snr)


def white_noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Real-space white Gaussian noise, float32, standard deviation ``sigma`` per pixel."""
    return sigma * rng.standard_normal(shape).astype(np.float32)


def white_noise_spectra(n: int, box: int, sigma: float, rng: np.random.Generator) -> torch.Tensor:
    """Centred spectra (n, box, box) of ``white_noise`` images, scaled as training spectra are
    (``data/training_data.py``): per-pixel variance σ² gives E|coefficient|² = σ²."""
    return fft2_centered(torch.from_numpy(white_noise((n, box, box), sigma, rng))) / box
