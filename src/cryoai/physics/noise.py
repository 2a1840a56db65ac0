"""The noise model: Gaussian noise added to real-space images (after the CTF), white or with a
radial power spectrum (coloured).

One model for the simulator and for the images the trainer renders (``train/supervision.py``).
Noise drawn in real space is real, so its spectrum is Hermitian: a spectrum with independent
complex noise in every coefficient, of which only the real image is kept, would carry half
the variance asked for.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cryoai.geometry.grids import fft2_centered, ifft2_centered


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


# ---- coloured noise: a radial power spectrum ---------------------------------------------------
# A spectrum p[r], r = 0 … box//2, holds E|F(k)|² of the orthonormal centred 2D DFT at the
# integer shell r = round(|k|) (Fourier pixels; the corners beyond box//2 use p[box//2]), so
# real-space white noise of standard deviation σ is p ≡ σ², and the noise variance per pixel
# is the mean of p over the L × L grid.

ICE_BOOST = 4.0  # the `ice` spectrum is 1 + 4 = 5 times stronger at s = 0 than at high frequency
ICE_LENGTH_A = 40.0  # … falling off as exp(−(s · 40 Å)²): ice thickness and detector low frequencies


def shell_of_pixel(box: int) -> np.ndarray:
    """(L, L) shell number round(|k|) of each pixel of the centred 2D grid, capped at box//2."""
    k = np.arange(box) - box // 2
    ky, kx = np.meshgrid(k, k, indexing="ij")
    return np.minimum(np.rint(np.sqrt(kx**2 + ky**2)).astype(np.int64), box // 2)


def shell_frequencies_A(box: int, apix: float) -> np.ndarray:
    """Spatial frequency (1/Å) of shells r = 0 … box//2: r / (L · apix)."""
    return np.arange(box // 2 + 1) / (box * apix)


def ice_spectrum(box: int, apix: float) -> np.ndarray:
    """Shape of the `ice` noise spectrum, 1 + 4·exp(−(s · 40 Å)²) per shell (relative power)."""
    s = shell_frequencies_A(box, apix)
    return 1.0 + ICE_BOOST * np.exp(-((s * ICE_LENGTH_A) ** 2))


def spectrum_from_table(freqs_A: np.ndarray, power: np.ndarray, box: int, apix: float) -> np.ndarray:
    """A tabulated spectrum (frequency in 1/Å, relative power) on the shells of box L at apix,
    interpolated linearly, held at its end values outside the table."""
    order = np.argsort(freqs_A)
    return np.interp(shell_frequencies_A(box, apix), freqs_A[order], power[order])


def pixel_variance(psd: np.ndarray, box: int) -> float:
    """Noise variance per pixel of a spectrum p[r]: the mean of p over the L × L grid."""
    return float(np.asarray(psd, dtype=np.float64)[shell_of_pixel(box)].mean())


def scaled_to_variance(psd: np.ndarray, box: int, variance: float) -> np.ndarray:
    """The spectrum shape ``psd`` scaled so that its noise variance per pixel is ``variance``."""
    return np.asarray(psd, dtype=np.float64) * (variance / pixel_variance(psd, box))


def coloured_noise(shape: tuple[int, ...], psd: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Real Gaussian noise (..., L, L), float32, with radial power spectrum ``psd`` (p[r], r = 0 …
    L//2): white noise of unit variance filtered by sqrt(p[round|k|]). The filter is radial, so
    even, and the noise stays real."""
    box = shape[-1]
    white = torch.from_numpy(rng.standard_normal(shape))
    gain = torch.from_numpy(np.sqrt(np.asarray(psd, dtype=np.float64))[shell_of_pixel(box)])
    return ifft2_centered(fft2_centered(white) * gain).numpy().astype(np.float32)
