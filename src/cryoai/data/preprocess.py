"""Image preprocessing: Fourier-crop downsampling, normalisation statistics, masks, polarity.

Centred convention throughout (``shared/CONVENTIONS.md``): the image centre is pixel L//2 and
the Fourier DC term sits at index L//2 after fftshift, for even and odd boxes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

if TYPE_CHECKING:
    from cryoai.data.particle_set import ParticleSet

Images = TypeVar("Images", np.ndarray, torch.Tensor)


def fourier_crop(images: Images, new_box: int) -> Images:
    """Downsample images (..., L, L) to (..., n, n) by keeping the central n×n Fourier block.

    The centre pixel L//2 maps to n//2 and the image mean is kept; the new pixel size is
    ``cropped_apix(apix, L, n)``. Works batched on numpy arrays and torch tensors (same type
    and float dtype out). ``new_box == L`` returns a copy.
    """
    L = images.shape[-1]
    if images.shape[-2] != L or not 0 < new_box <= L:
        raise ValueError(f"fourier_crop needs square images and 0 < new_box <= {L}, got {images.shape}, {new_box}")
    start = L // 2 - new_box // 2
    crop = (..., slice(start, start + new_box), slice(start, start + new_box))
    scale = (new_box / L) ** 2  # numpy's unnormalised forward FFT: keeps the mean
    if isinstance(images, torch.Tensor):
        dims = (-2, -1)
        F = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(images, dim=dims)), dim=dims)
        out = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(F[crop], dim=dims)), dim=dims).real
        return (out * scale).to(images.dtype if images.is_floating_point() else torch.float32)
    axes = (-2, -1)
    F = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=axes)), axes=axes)
    out = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(F[crop], axes=axes)), axes=axes).real * scale
    dtype = images.dtype if np.issubdtype(images.dtype, np.floating) else np.float32
    return out.astype(dtype, copy=False)


def cropped_apix(apix: float, box: int, new_box: int) -> float:
    """Pixel size (Å) after Fourier-cropping a box of ``box`` px at ``apix`` Å to ``new_box`` px."""
    return float(apix) * box / new_box


def invert_contrast(images: Images) -> Images:
    """Flip the sign of images (dark ↔ bright); the caller records that it did."""
    return -images


def circular_mask(box: int, radius_px: float, soft_edge_px: float = 0.0) -> np.ndarray:
    """float32 (box, box) mask centred on pixel box//2: 1 within ``radius_px``, a raised-cosine
    fall-off to 0 over ``soft_edge_px`` beyond it, 0 outside."""
    r = _radius(box)
    if soft_edge_px <= 0:
        return (r <= radius_px).astype(np.float32)
    t = np.clip((r - radius_px) / soft_edge_px, 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)


def dataset_statistics(particles: ParticleSet, n_sample: int = 1000, seed: int = 0,
                       batch: int = 256) -> tuple[float, float]:
    """Pixel mean and standard deviation over a random sample of ``n_sample`` images."""
    rows = _sample_rows(len(particles), n_sample, seed)
    total = total_sq = count = 0.0
    for start in range(0, len(rows), batch):
        block = particles.images(rows[start:start + batch]).astype(np.float64)
        total += block.sum()
        total_sq += np.square(block).sum()
        count += block.size
    mean = total / count
    return float(mean), float(np.sqrt(max(total_sq / count - mean**2, 0.0)))


def guess_polarity(particles: ParticleSet, n_sample: int = 200, seed: int = 0) -> str:
    """'bright' (molecule brighter than background, as RELION extracts) or 'dark'.

    Compares, per image, the mean inside a central disc (radius L/4) with the mean of the
    corners (beyond 0.45 L), in units of the image's standard deviation, and takes the sign
    of the median over a random sample.
    """
    rows = _sample_rows(len(particles), n_sample, seed)
    r = _radius(particles.box) / particles.box
    inner, outer = r < 0.25, r > 0.45
    scores = []
    for start in range(0, len(rows), 256):
        block = particles.images(rows[start:start + 256]).astype(np.float64)
        contrast = block[:, inner].mean(1) - block[:, outer].mean(1)
        scores.append(contrast / np.maximum(block.std(axis=(1, 2)), 1e-12))
    return "bright" if np.median(np.concatenate(scores)) >= 0 else "dark"


def _radius(box: int) -> np.ndarray:
    c = np.arange(box) - box // 2
    return np.hypot(c[:, None], c[None, :])


def _sample_rows(n: int, n_sample: int, seed: int) -> np.ndarray:
    """Sorted random rows (sorted: contiguous reads); all rows when n ≤ n_sample."""
    if n <= n_sample:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=n_sample, replace=False))
