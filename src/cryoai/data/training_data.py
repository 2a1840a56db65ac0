"""Particles prepared for training: images read lazily, Fourier-cropped to the training box and
normalised.

For a batch of particle indices ``TrainingData.batch`` gives the centred spectra at the training
box (what the loss compares), real-space images at the encoder box (what the encoder sees) and
the CTF parameters. Spectra are scaled so that white noise of unit variance per pixel has unit
variance per Fourier coefficient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cryoai.data.particles import ParticleSet
from cryoai.geometry.grids import fft2_centered, ifft2_centered
from cryoai.physics.ctf import CTFParams


def crop_spectra(spectra: torch.Tensor, box: int) -> torch.Tensor:
    """The central (box, box) block of centred spectra (..., L, L) (Fourier cropping)."""
    size = spectra.shape[-1]
    start = size // 2 - box // 2
    return spectra[..., start : start + box, start : start + box]


@dataclass
class Batch:
    indices: torch.Tensor  # (B,) particle rows
    spectra: torch.Tensor  # (B, Lt, Lt) complex, centred, normalised
    images: torch.Tensor  # (B, Le, Le) real, for the encoder
    ctf_params: CTFParams | None  # B particles, float32 tensors

    def to(self, device) -> "Batch":
        """On ``device`` (asynchronous from pinned memory); the indices stay on the CPU."""
        def move(t: torch.Tensor | CTFParams | None) -> torch.Tensor | CTFParams | None:
            return None if t is None else t.to(device, non_blocking=True)
        return Batch(self.indices, move(self.spectra), move(self.images), move(self.ctf_params))

    def pin_memory(self) -> "Batch":
        """Page-locked copies (DataLoader's ``pin_memory`` calls this): asynchronous GPU copies."""
        ctf = None if self.ctf_params is None else self.ctf_params.pin_memory()
        return Batch(self.indices, self.spectra.pin_memory(), self.images.pin_memory(), ctf)


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
        images = ifft2_centered(crop_spectra(spectra, self.encoder_box)) * self.encoder_box
        ctf = self.particles.ctf
        ctf_params = ctf[idx].to_torch(torch.float32) if ctf is not None else None
        return Batch(torch.from_numpy(idx), spectra, images, ctf_params)

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
