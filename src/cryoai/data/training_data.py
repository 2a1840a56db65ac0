"""Particles prepared for training: images read lazily, Fourier-cropped to the training box and
normalised.

For a batch of particle indices ``TrainingData.batch`` gives the centred spectra at the training
box (what the loss compares), real-space images at the encoder box (what the encoder sees) and
the CTF parameters. Spectra are scaled so that white noise of unit variance per pixel has unit
variance per Fourier coefficient.

With a noise spectrum (``TrainingData.noise``, ``data/noise_spectrum.py``) the spectra are
whitened here, once, and the batch carries each image's whitening filter: ``Batch.model_filter``
(CTF × whitening) is what multiplies the slice in the model of these spectra, wherever the data
meet the model (training loss, pose refinement, warm start, reconstruction). The encoder sees
the whitened images too: the synthetic images it also learns from carry white noise, and the
noise it meets at prediction is then the noise it was trained on, whatever the data's colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cryoai.data.noise_spectrum import NoiseSpectrum, radial_values, shell_grid
from cryoai.data.particles import ParticleSet
from cryoai.geometry.grids import fft2_centered, freq_grid_2d, ifft2_centered
from cryoai.physics.ctf import CTFParams, ctf


def crop_spectra(spectra: torch.Tensor, box: int) -> torch.Tensor:
    """The central (box, box) block of centred spectra (..., L, L) (Fourier cropping)."""
    size = spectra.shape[-1]
    start = size // 2 - box // 2
    return spectra[..., start : start + box, start : start + box]


def ctf_and_whitening(ctf_params: CTFParams | None, whitening: torch.Tensor | None, freqs: torch.Tensor,
                      apix: float, box: int) -> torch.Tensor | None:
    """CTF × whitening filter (B, M) at freqs (M, 2) in cycles/px of the training box (``box`` px
    of ``apix`` Å): the factor the model applies to a slice to predict whitened spectra; None when
    there is neither a CTF nor a whitening filter (B, box//2 + 1)."""
    c = ctf(freqs / apix, ctf_params) if ctf_params is not None else None
    if whitening is None:
        return c
    w = radial_values(whitening.to(freqs.device), freqs * box)
    return w if c is None else c * w


@dataclass
class Batch:
    indices: torch.Tensor  # (B,) particle rows
    spectra: torch.Tensor  # (B, Lt, Lt) complex, centred, normalised
    images: torch.Tensor  # (B, Le, Le) real, for the encoder
    ctf_params: CTFParams | None  # B particles, float32 tensors
    whitening: torch.Tensor | None = None  # (B, Lt//2 + 1) radial filter the spectra were whitened by

    def model_filter(self, freqs: torch.Tensor, apix: float) -> torch.Tensor | None:
        """CTF × whitening (B, M) at freqs (M, 2) cycles/px of the training box (``ctf_and_whitening``)."""
        return ctf_and_whitening(self.ctf_params, self.whitening, freqs, apix, self.spectra.shape[-1])

    def to(self, device) -> "Batch":
        """On ``device`` (asynchronous from pinned memory); the indices stay on the CPU."""
        def move(t: torch.Tensor | CTFParams | None) -> torch.Tensor | CTFParams | None:
            return None if t is None else t.to(device, non_blocking=True)
        return Batch(self.indices, move(self.spectra), move(self.images), move(self.ctf_params), move(self.whitening))

    def pin_memory(self) -> "Batch":
        """Page-locked copies (DataLoader's ``pin_memory`` calls this): asynchronous GPU copies."""
        ctf = None if self.ctf_params is None else self.ctf_params.pin_memory()
        white = None if self.whitening is None else self.whitening.pin_memory()
        return Batch(self.indices, self.spectra.pin_memory(), self.images.pin_memory(), ctf, white)


class TrainingData:
    """Particles prepared for training at ``train_box`` (pixel size apix·L/Lt)."""

    def __init__(self, particles: ParticleSet, train_box: int, encoder_box: int, invert: bool = False,
                 n_stats: int = 512, seed: int = 0):
        self.particles = particles
        self.box = particles.box
        self.train_box = min(train_box, self.box)
        self.encoder_box = min(encoder_box, self.train_box)
        self.apix = particles.apix * self.box / self.train_box
        self.sign = -1.0 if invert else 1.0
        self.cache = getattr(particles, "cache", None)
        self.noise: NoiseSpectrum | None = None  # set it to whiten (module docstring)
        if self.cache is not None:  # preprocessed images (data/cache.py): its box and statistics
            self.cache.check(particles, self.train_box)
            self.mean, self.std = self.cache.mean, self.cache.std
            return
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(len(particles), min(n_stats, len(particles)), replace=False))
        spectra = self._cropped(sample)
        real = ifft2_centered(spectra)
        self.mean = float(real.mean())
        self.std = float(real.std()) or 1.0

    def _cropped(self, indices: np.ndarray) -> torch.Tensor:
        images = torch.from_numpy(self.particles.images(indices))
        return crop_spectra(fft2_centered(images), self.train_box) * (self.train_box / self.box) ** 2

    def batch(self, indices) -> Batch:
        idx = np.asarray(indices)
        spectra = self._normalised_spectra(idx) * self.sign
        whitening = self.whitening(idx)
        if whitening is not None:
            spectra = spectra * whitening[:, shell_grid(self.train_box)]
        images = ifft2_centered(crop_spectra(spectra, self.encoder_box)) * self.encoder_box
        return Batch(torch.from_numpy(idx), spectra, images, self._ctf_params(idx), whitening)

    def whitening(self, indices) -> torch.Tensor | None:
        """The radial whitening filters (n, Lt//2 + 1) of particles ``indices``, None without a noise spectrum."""
        return None if self.noise is None else self.noise.whitening(np.asarray(indices))

    def model_filter(self, indices, freqs: torch.Tensor) -> torch.Tensor | None:
        """CTF × whitening (n, M) of particles ``indices`` at freqs (M, 2) cycles/px of the
        training box, as ``Batch.model_filter`` without reading the images."""
        idx = np.asarray(indices)
        return ctf_and_whitening(self._ctf_params(idx), self.whitening(idx), freqs, self.apix, self.train_box)

    def small_box_inputs(self, rows: np.ndarray, box: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Whitened spectra (n, box, box) of ``rows`` Fourier-cropped to ``box`` and the model's
        CTF × whitening there (n, box, box; ones without either): the inputs of a grid search at
        a small box (the warm start, the class search)."""
        rows = np.asarray(rows)
        spectra = torch.cat([crop_spectra(self.batch(rows[i : i + 512]).spectra, box) for i in range(0, len(rows), 512)])
        filters = self.model_filter(rows, freq_grid_2d(box).reshape(-1, 2) * (box / self.train_box))
        return spectra, torch.ones(len(rows), box, box) if filters is None else filters.reshape(-1, box, box)

    def _ctf_params(self, idx: np.ndarray) -> CTFParams | None:
        ctf_set = self.particles.ctf
        return ctf_set[idx].to_torch(torch.float32) if ctf_set is not None else None

    def _normalised_spectra(self, idx: np.ndarray) -> torch.Tensor:
        """Spectra (n, Lt, Lt) of the cropped images minus the mean, over std (no polarity sign)."""
        if self.cache is not None:
            return fft2_centered(torch.from_numpy(self.cache.images(idx))) / self.train_box
        order = np.argsort(idx, kind="stable")  # read in file order, return in request order
        spectra = torch.empty((len(idx), self.train_box, self.train_box), dtype=torch.complex64)
        spectra[torch.from_numpy(order)] = self._cropped(idx[order])
        centre = self.train_box // 2
        spectra[:, centre, centre] -= self.mean * self.train_box**2  # remove the mean (DC)
        return spectra * (1.0 / (self.std * self.train_box))

    def normalised_images(self, indices) -> np.ndarray:
        """Real images (n, Lt, Lt) float32, cropped and normalised, without the sign: what the
        particle cache stores (``data/cache.py``)."""
        idx = np.asarray(indices)
        if self.cache is None and self.train_box == self.box:  # no cropping: the same, in real space
            order = np.argsort(idx, kind="stable")
            out = np.empty((len(idx), self.box, self.box), dtype=np.float32)
            out[order] = (self.particles.images(idx[order]) - np.float32(self.mean)) / np.float32(self.std)
            return out
        return (ifft2_centered(self._normalised_spectra(idx)) * self.train_box).numpy()
