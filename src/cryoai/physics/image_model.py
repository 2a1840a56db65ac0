"""The image formation model: volume + pose + CTF + shift → particle image (Fourier space).

Ŷ(k) = exp(−2πi k·(−origin)) · CTF(k) · V̂(Aᵀ[k, 0]). One implementation, used by the
simulator and by the reconstruction decoder. ``volume`` is any callable mapping (B, M, 3)
frequencies in cycles/pixel to complex values (``FourierMap``, a voxel grid, FourierNet).
"""

from __future__ import annotations

from typing import Callable

import torch

from cryoai.geometry.grids import freq_grid_2d, ifft2_centered
from cryoai.physics.ctf import CTFParams, ctf
from cryoai.physics.shifts import origin_phase
from cryoai.physics.slicing import slice_coordinates

Volume = Callable[[torch.Tensor], torch.Tensor]


def render_spectra(
    volume: Volume,
    rotations: torch.Tensor,
    freqs: torch.Tensor,
    ctf_values: torch.Tensor | None = None,
    origins_px: torch.Tensor | None = None,
) -> torch.Tensor:
    """Predicted transforms of B particles at M frequencies.

    rotations (B, 3, 3) RELION matrices; freqs (M, 2) in cycles/pixel; ctf_values (B, M) or None;
    origins_px (B, 2) RELION origins in pixels or None. Returns (B, M) complex.
    """
    spectra = volume(slice_coordinates(rotations, freqs))
    if ctf_values is not None:
        spectra = spectra * ctf_values
    if origins_px is not None:
        spectra = spectra * origin_phase(freqs, origins_px)
    return spectra


def render_images(
    volume: Volume,
    rotations: torch.Tensor,
    box: int,
    apix: float,
    ctf_params: CTFParams | None = None,
    origins_A: torch.Tensor | None = None,
) -> torch.Tensor:
    """Real-space images (B, L, L) of a volume: full centred grid, then inverse DFT.

    ctf_params: B particles' CTF or None; origins_A (B, 2) in Å or None.
    """
    freqs = freq_grid_2d(box, rotations.device).reshape(-1, 2)
    ctf_values = ctf(freqs / apix, ctf_params) if ctf_params is not None else None
    origins_px = origins_A / apix if origins_A is not None else None
    spectra = render_spectra(volume, rotations.to(torch.float32), freqs, ctf_values, origins_px)
    return ifft2_centered(spectra.reshape(-1, box, box))
