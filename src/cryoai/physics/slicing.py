"""Central slices: rotated 2D frequency coordinates and interpolation in a 3D Fourier grid."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from cryoai.geometry.grids import fft3_centered


def slice_coordinates(rotations: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """3D frequencies of the central slice for poses A: the row vectors [kx, ky, 0] @ A.

    rotations: (B, 3, 3) RELION matrices; freqs: (M, 2) in any reciprocal unit.
    Returns (B, M, 3) coordinates (x, y, z) in the same unit.
    """
    return torch.einsum("mi,bij->bmj", freqs.to(rotations.dtype), rotations[:, :2, :])


def project(volume: Callable[[torch.Tensor], torch.Tensor], rotations: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Central slices of ``volume`` (a callable of (B, M, 3) frequencies) for poses ``rotations``
    (B, 3, 3) at ``freqs`` (M, 2): the transforms of the projections, (B, M) complex."""
    return volume(slice_coordinates(rotations, freqs))


def sample_grid(grid: torch.Tensor, index_xyz: torch.Tensor) -> torch.Tensor:
    """Trilinear interpolation of a complex grid (D, H, W) at fractional voxel indices.

    index_xyz: (..., 3) 0-based indices ordered (x, y, z), x along the last axis of ``grid``.
    Points outside the grid read as 0. Returns complex values of shape ``index_xyz.shape[:-1]``.
    """
    size = torch.tensor(grid.shape[::-1], dtype=index_xyz.dtype, device=index_xyz.device)  # (W, H, D)
    normalised = index_xyz / (size - 1) * 2 - 1
    channels = torch.stack([grid.real, grid.imag]).unsqueeze(0)  # (1, 2, D, H, W)
    points = normalised.reshape(1, 1, 1, -1, 3).to(channels.dtype)
    out = F.grid_sample(channels, points, mode="bilinear", padding_mode="zeros", align_corners=True)
    out = out.reshape(2, *index_xyz.shape[:-1])
    return torch.complex(out[0], out[1])


class SpectrumVolume:
    """A fixed volume held as a centred complex 3D spectrum of size D, sampled trilinearly.

    D may exceed the image box (zero-padded map, finer sampling); a frequency k in cycles per
    pixel sits at index k·D + D//2 either way.
    """

    def __init__(self, spectrum: torch.Tensor):
        self.spectrum = spectrum.to(torch.complex64)
        self.size = spectrum.shape[-1]

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        """Values at 3D frequencies ``coords`` (..., 3) in cycles per pixel."""
        return sample_grid(self.spectrum, coords * self.size + self.size // 2)


def fourier_map(volume: torch.Tensor, pad: int = 2) -> SpectrumVolume:
    """A real-space map (z, y, x) as its zero-padded centred 3D transform, ready for slicing.

    Padding by ``pad`` oversamples the transform so trilinear interpolation is accurate; the
    transform is unnormalised, so a slice equals the 2D DFT of the projection (sum over z).
    """
    box = volume.shape[-1]
    size = pad * box
    start = size // 2 - box // 2
    padded = volume.new_zeros((size, size, size), dtype=torch.float32)
    padded[start : start + box, start : start + box, start : start + box] = volume
    return SpectrumVolume(fft3_centered(padded))
