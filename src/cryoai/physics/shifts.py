"""In-plane translations as Fourier phase factors (``shared/CONVENTIONS.md``)."""

from __future__ import annotations

import math

import torch


def translation_phase(freqs: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """exp(−2πi k·d): the factor that moves image content by d in real space.

    freqs: (M, 2) frequencies (kx, ky), shift: (B, 2) displacements (x, y) in reciprocal units
    (cycles/pixel with pixels, or 1/Å with Å). Returns (B, M) complex64.
    """
    phase = -2 * math.pi * (shift.to(torch.float32) @ freqs.to(torch.float32).T)
    return torch.polar(torch.ones_like(phase), phase)


def origin_phase(freqs: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """Phase factor for particles with RELION origin ``origin`` (B, 2): the particle sits at
    image centre − origin, i.e. the centred projection moved by d = −origin."""
    return translation_phase(freqs, -origin)
