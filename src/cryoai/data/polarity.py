"""Particle polarity: is the molecule brighter or darker than the background?

(Cropping and normalisation for training live in one place, ``data/training_data.py`` TrainingData.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cryoai.data.particle_set import ParticleSet


def guess_polarity(particles: ParticleSet, n_sample: int = 200, seed: int = 0) -> str:
    """'bright' (molecule brighter than background, as RELION extracts) or 'dark'.

    Compares, per image, the mean inside a central disc (radius L/4) with the mean of the
    corners (beyond 0.45 L), in units of the image's standard deviation, and takes the sign
    of the median over a random sample.
    """
    rows = _sample_rows(len(particles), n_sample, seed)
    c = np.arange(particles.box) - particles.box // 2
    r = np.hypot(c[:, None], c[None, :]) / particles.box
    inner, outer = r < 0.25, r > 0.45
    scores = []
    for start in range(0, len(rows), 256):
        block = particles.images(rows[start:start + 256]).astype(np.float64)
        contrast = block[:, inner].mean(1) - block[:, outer].mean(1)
        scores.append(contrast / np.maximum(block.std(axis=(1, 2)), 1e-12))
    return "bright" if np.median(np.concatenate(scores)) >= 0 else "dark"


def _sample_rows(n: int, n_sample: int, seed: int) -> np.ndarray:
    """Sorted random rows (sorted: contiguous reads); all rows when n ≤ n_sample."""
    if n <= n_sample:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=n_sample, replace=False))
