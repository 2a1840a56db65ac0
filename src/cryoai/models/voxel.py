"""A voxel grid in Fourier space, the fast volume: complex values on the half space kx ≥ 0.

Queries at kx < 0 read −k and conjugate, so the map is Hermitian (real in real space) by
construction. Frequencies are in cycles per pixel; the grid holds integer frequencies
0 … L/2 along x and −L/2 … L/2−1 along y and z, trilinearly interpolated, zero outside.
"""

from __future__ import annotations

import torch
from torch import nn

from cryoai.physics.slicing import sample_grid


def hermitian_query(coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Map coordinates to the half space kx ≥ 0: returns (coords', conjugate mask)."""
    flip = coords[..., 0] < 0
    return torch.where(flip.unsqueeze(-1), -coords, coords), flip


class VoxelVolume(nn.Module):
    """Half-space complex Fourier grid of a box-L map, oversampled: the grid has D = L·oversample
    samples per axis (a zero-padded map), so trilinear interpolation is accurate. The values are
    stored relative to ``scale`` (set from the initial spectrum) so learning rates are relative.
    """

    def __init__(self, box: int, oversample: int = 2):
        super().__init__()
        self.box, self.oversample = box, oversample
        size = box * oversample
        self.size = size
        self.values = nn.Parameter(torch.zeros(2, size, size, size // 2 + 1))  # (re/im, z, y, x)
        self.register_buffer("scale", torch.tensor(1.0))

    @torch.no_grad()
    def load_spectrum(self, spectrum: torch.Tensor) -> None:
        """Set the grid from a full centred (D, D, D) complex spectrum (e.g. a back-projection)."""
        half = spectrum[..., self.size // 2 :]  # frequencies 0 … D/2 − 1; the +D/2 plane stays 0
        self.scale.fill_(float(half.abs().pow(2).mean().sqrt()) or 1.0)
        self.values.zero_()
        self.values[..., : half.shape[-1]] = torch.stack([half.real, half.imag]).to(self.values.dtype) / self.scale

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """Complex values at (..., 3) frequencies in cycles/pixel."""
        coords, flip = hermitian_query(coords)
        offset = torch.tensor([0.0, self.size // 2, self.size // 2], device=coords.device)
        grid = torch.complex(self.values[0], self.values[1]) * self.scale
        out = sample_grid(grid, coords * self.size + offset)
        return torch.where(flip, out.conj(), out)
