"""The noise model of the data: a radial noise power spectrum per optics group, estimated from
the image region outside a circular particle mask, and the whitening filter it gives.

Convention (interfaces): p[r], r = 0 … box//2, integer shells round(|k|) of the centred
training-box grid, orthonormal 2D FFT (E|F(k)|² = p[round|k|]; white noise of standard
deviation σ per pixel has p ≡ σ²); frequencies beyond box//2 (the corners) use p[box//2]. The
units are those of the normalised training images (``TrainingData``).

Estimator (as RELION's sigma2_noise estimate, from the background): each image x, less its
background's mean (the offset global normalisation leaves), is multiplied by a background mask b (0 inside the particle's circle of radius R, rising to 1 over a cosine
edge of ``EDGE_PX`` pixels), its periodogram |FFT(b·x)|²/L² averaged over the images and over
each shell, and divided by mean(b²), the fraction of the box the mask keeps. Its expectation is
the true spectrum convolved with the mask's normalised power transfer |B̂|²/Σ|B̂|²: exact for
white noise (p = σ², tested), and for coloured noise a smoothing over about L/(2R) Fourier
pixels (≈ 1.3 px for the default mask), a bias where p curves sharply: −14 % in shell 0 of a
steep low-frequency rise (p ∝ 1 + 8·e^(−r/4), box 64, 300 images). One multiplicative
correction step (``CORRECTIONS``: p ← p · observed / (p seen through the mask), the convolution
computed exactly by FFT) takes that to −5 %; more steps remove the rest but amplify the
statistical error, which is ≈ 1/√(images · coefficients in the shell · mean(b²)) (3–5 % in the
lowest shells from 300 images). Particle signal leaks in only where the particle extends beyond
the mask (a diameter set too small), which raises p at low frequency. With the offsets removed
the background says nothing of the DC term: p[0] is set to p[1].

Whitening: data spectra and the model's prediction (CTF × slice) are both multiplied by
w(k) = √(p_ref / p(k)), i.e. the squared residual is weighted by 1/p, up to the constant p_ref,
the mean of p over every coefficient of the box and every particle. The constant keeps the
loss's scale (and the whitened noise power) what it was, so that white noise (p constant) gives
w ≡ 1 exactly: nothing changes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from cryoai.errors import InputError
from cryoai.geometry.grids import fft2_centered, freq_indices
from cryoai.io.atomic import atomic_path

if TYPE_CHECKING:
    from cryoai.data.particle_set import ParticleSet
    from cryoai.data.training_data import TrainingData

EDGE_PX = 3.0  # width of the background mask's soft edge (pixels of the training box)
DIAMETER_FRACTION = 0.75  # default particle diameter as a fraction of the box
CORRECTIONS = 1  # fixed-point steps that undo the mask's smoothing of the spectrum
# Whitening needs images whose background is noise: below this fraction of the image's power per
# pixel the background holds too little to be noise-dominated (high-SNR or noise-free data, where
# what lies outside the mask is the particle's own tails and the spectrum falls by 10³–10⁵ towards
# Nyquist: whitening by it amplified those shells and broke the noise-free regression guard,
# tests/train/test_reconstruction.py, 5° → 66°). Expected: SNR 0.1 ≈ 0.9, SNR 1 ≈ 0.5, SNR 10 ≈ 0.1.
MIN_BACKGROUND_FRACTION = 0.3


def shell_grid(box: int, device=None) -> torch.Tensor:
    """(box, box) shell index round(|k|) of each pixel of a centred spectrum, corners clamped to
    box//2."""
    f = freq_indices(box, device).to(torch.float32)
    ky, kx = torch.meshgrid(f, f, indexing="ij")
    return torch.sqrt(kx**2 + ky**2).round().long().clamp(max=box // 2)


def radial_values(radial: torch.Tensor, freqs_px: torch.Tensor) -> torch.Tensor:
    """Per image, a radial function radial (B, S) at frequencies freqs_px (M, 2) in Fourier
    pixels of the training box: (B, M) (shell round(|k|), beyond S − 1 clamped to S − 1)."""
    shells = freqs_px.norm(dim=-1).round().long().clamp(max=radial.shape[-1] - 1)
    return radial[:, shells.to(radial.device)]


def background_mask(box: int, radius_px: float) -> torch.Tensor:
    """(box, box) weights: 0 inside the circle of ``radius_px`` about the centre pixel, 1 beyond
    radius + ``EDGE_PX``, a raised cosine between."""
    f = freq_indices(box).to(torch.float32)
    y, x = torch.meshgrid(f, f, indexing="ij")
    t = ((torch.sqrt(x**2 + y**2) - radius_px) / EDGE_PX).clamp(0.0, 1.0)
    return 0.5 - 0.5 * torch.cos(math.pi * t)


def _shell_mean(grid: torch.Tensor, shells: torch.Tensor) -> torch.Tensor:
    """Mean of a (box, box) grid over each shell of ``shells`` (box, box): (box//2 + 1,) float64."""
    n = int(shells.max()) + 1
    total = torch.zeros(n, dtype=torch.float64).index_add_(0, shells.flatten(), grid.flatten().double())
    count = torch.zeros(n, dtype=torch.float64).index_add_(0, shells.flatten(), torch.ones(grid.numel(), dtype=torch.float64))
    return total / count


def _leaked(power: torch.Tensor, kernel_ft: torch.Tensor, shells: torch.Tensor) -> torch.Tensor:
    """The shell means of the radial ``power`` (box//2 + 1,) seen through the mask: its 2D grid
    convolved (circularly, via ``kernel_ft``, the FFT of the mask's normalised power transfer)."""
    grid = torch.fft.ifftshift(power[shells])
    seen = torch.fft.fftshift(torch.fft.ifft2(torch.fft.fft2(grid) * kernel_ft).real)
    return _shell_mean(seen, shells)


def background_power(images: torch.Tensor, radius_px: float, corrections: int = CORRECTIONS) -> torch.Tensor:
    """The noise power spectrum p (box//2 + 1,) of real images (n, L, L) from their background
    outside a particle circle of ``radius_px`` (module docstring: the mask-corrected periodogram,
    then ``corrections`` steps undoing the mask's smoothing)."""
    box = images.shape[-1]
    mask = background_mask(box, radius_px)
    kept = float((mask**2).mean())
    if kept < 0.05:
        raise InputError(f"--particle-diameter-A: a particle mask of radius {radius_px:.1f} px leaves {kept:.1%} of "
                         f"the {box}-px box for the noise estimate; give a smaller diameter")
    shells = shell_grid(box)
    x = images.to(torch.float32)
    x = x - (x * mask).sum((-2, -1), keepdim=True) / mask.sum()  # each image's background offset
    power = (fft2_centered(x * mask).abs() ** 2).mean(0).double() / box**2
    observed = _shell_mean(power, shells) / kept
    transfer = torch.fft.fft2(torch.fft.ifftshift(mask.double())).abs() ** 2
    kernel_ft = torch.fft.fft2(transfer / transfer.sum())
    estimate = observed.clone()
    for _ in range(corrections):  # multiplicative fixed point: the estimate seen through the mask ≈ observed
        estimate = estimate * observed / _leaked(estimate, kernel_ft, shells).clamp_min(1e-30)
    estimate[0] = estimate[1]  # the offsets removed, the background says nothing of the DC term
    return estimate.float()


def background_fraction(images: torch.Tensor, radius_px: float) -> float:
    """Power per pixel of the images' background (outside the particle circle of ``radius_px``,
    each image's background offset removed) over their power per pixel in the whole box: ≈ 1 for
    pure noise, → 0 for noise-free images (``MIN_BACKGROUND_FRACTION``)."""
    mask = background_mask(images.shape[-1], radius_px)
    x = images.to(torch.float64)
    x = x - (x * mask).sum((-2, -1), keepdim=True) / mask.sum()
    background = float(((x * mask) ** 2).mean() / (mask**2).mean())
    return background / max(float((x**2).mean()), 1e-30)


def optics_groups(particles: ParticleSet) -> tuple[np.ndarray, list[int]]:
    """Per particle, the row of its optics group (N,), and the groups' rlnOpticsGroup numbers
    (one group, numbered 1, when the input has none)."""
    table = particles.table
    if "rlnOpticsGroup" not in table:
        return np.zeros(len(particles), dtype=np.int64), [1]
    ids, rows = np.unique(table["rlnOpticsGroup"].to_numpy(), return_inverse=True)
    return rows.reshape(-1).astype(np.int64), [int(i) for i in ids]


@dataclass
class NoiseSpectrum:
    """Noise power spectra p (n_groups, box//2 + 1) of the training box, in the normalised
    training images' units, and each particle's group row; ``mask_radius_px`` and
    ``images_per_group`` record how they were estimated."""

    power: np.ndarray
    groups: np.ndarray  # (N,) row of ``power`` for each particle
    group_ids: list[int]  # rlnOpticsGroup of each row
    box: int
    apix: float  # Å per pixel of the training box
    mask_radius_px: float
    images_per_group: list[int]
    background_fractions: list[float]  # per group (``background_fraction``)

    def noise_dominated(self) -> bool:
        """Whether every group's background is noise (``MIN_BACKGROUND_FRACTION``): whiten only then."""
        return min(self.background_fractions) >= MIN_BACKGROUND_FRACTION

    def reference(self) -> float:
        """p_ref: the mean of p over every coefficient of the box and every particle."""
        per_group = self.power[:, shell_grid(self.box).numpy()].mean((1, 2))
        weights = np.bincount(self.groups, minlength=len(self.power)).astype(np.float64)
        return float((per_group * weights).sum() / max(weights.sum(), 1.0))

    def whitening(self, rows: np.ndarray) -> torch.Tensor:
        """The radial whitening filter √(p_ref / p) of the particles ``rows``: (n, box//2 + 1) float32."""
        gain = np.sqrt(self.reference() / np.maximum(self.power, 1e-12 * self.power.max()))
        return torch.from_numpy(gain[self.groups[np.asarray(rows)]].astype(np.float32))

    def is_white(self) -> bool:
        return bool(np.all(self.power == self.power[:, :1]))

    def summary(self) -> str:
        """One log line: per group, p at a few shells and its low/high-frequency ratio."""
        half = self.box // 2
        picks = sorted({1, half // 4, half // 2, half})
        parts = []
        for gid, p, n in zip(self.group_ids, self.power, self.images_per_group):
            values = ", ".join(f"{p[r]:.3g}@{r / (self.box * self.apix):.3f}/Å" for r in picks)
            parts.append(f"group {gid} ({n} images): p = {values}; p(shell 1)/p(Nyquist) = {p[1] / p[half]:.2f}")
        return (f"noise spectrum outside a {2 * self.mask_radius_px * self.apix:.0f} Å mask: " + "; ".join(parts))

    def write(self, path: str | os.PathLike) -> None:
        """Text table: shell, frequency (1/Å), p of each group (atomically)."""
        shells = np.arange(self.box // 2 + 1)
        table = np.column_stack([shells, shells / (self.box * self.apix), self.power.T])
        header = ("noise power spectrum per optics group (normalised training images, box "
                  f"{self.box}, {self.apix:.4g} A/px)\nshell  frequency_1/A  "
                  + "  ".join(f"p_group{g}" for g in self.group_ids))
        with atomic_path(path) as tmp:
            np.savetxt(tmp, table, fmt=["%d", "%.6f"] + ["%.6g"] * len(self.group_ids), header=header)


def estimate_noise_spectrum(data: TrainingData, particle_diameter_A: float | None = None,
                            images_per_group: int = 300, seed: int = 0) -> NoiseSpectrum:
    """The noise spectrum of ``data``'s particles at its training box, per optics group, from up
    to ``images_per_group`` random images of each (module docstring). ``particle_diameter_A``:
    the mask's diameter (default ``DIAMETER_FRACTION`` of the box)."""
    box, apix = data.train_box, data.apix
    radius_px = (DIAMETER_FRACTION * box * apix if particle_diameter_A is None else particle_diameter_A) / (2 * apix)
    groups, ids = optics_groups(data.particles)
    rng = np.random.default_rng([seed, 11])
    power, counts, fractions = [], [], []
    for g in range(len(ids)):
        members = np.flatnonzero(groups == g)
        rows = np.sort(rng.choice(members, min(images_per_group, len(members)), replace=False))
        images = torch.from_numpy(data.normalised_images(rows))
        power.append(background_power(images, radius_px).numpy())
        counts.append(len(rows))
        fractions.append(background_fraction(images, radius_px))
    return NoiseSpectrum(np.stack(power), groups, ids, box, apix, radius_px, counts, fractions)


def noise_model(data: TrainingData, particle_diameter_A: float | None = None, seed: int = 0,
                log=lambda line: None) -> NoiseSpectrum | None:
    """The spectrum to whiten ``data`` by, or None (white) when the images' background is not
    noise-dominated (``NoiseSpectrum.noise_dominated``); the estimate and the choice are logged."""
    spectrum = estimate_noise_spectrum(data, particle_diameter_A, seed=seed)
    log(spectrum.summary())
    if spectrum.noise_dominated():
        return spectrum
    log(f"not whitening: the background holds {min(spectrum.background_fractions):.2f} of the images' power per "
        f"pixel (< {MIN_BACKGROUND_FRACTION}): high-SNR or noise-free images, whose background is not noise")
    return None
