"""A voxel grid in Fourier space, the fast volume: complex values on the half space kx ≥ 0.

Queries at kx < 0 read −k and conjugate, and the kx = 0 plane, which holds both k and −k, is
read through its Hermitian part (V(0, ky, kz) + conj V(0, −ky, −kz)) / 2, so the map is
Hermitian (real in real space) by construction. Frequencies are in cycles per pixel; the grid holds integer frequencies
0 … L/2 along x and −L/2 … L/2−1 along y and z, trilinearly interpolated, zero outside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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

    def hermitian_values(self) -> torch.Tensor:
        """``values`` with the kx = 0 plane replaced by its Hermitian part: index i along y and z
        (frequency i − D/2) pairs with D − i (mod D; the Nyquist index 0 pairs with itself)."""
        plane = self.values[..., 0]  # (2, z, y)
        mirror = torch.roll(plane.flip(-2, -1), shifts=(1, 1), dims=(-2, -1))
        conj = torch.tensor([1.0, -1.0], dtype=plane.dtype, device=plane.device).view(2, 1, 1)
        return torch.cat([(0.5 * (plane + conj * mirror)).unsqueeze(-1), self.values[..., 1:]], dim=-1)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """Complex values at (..., 3) frequencies in cycles/pixel.

        Trilinear interpolation of the (re, im) channels by ``grid_sample`` (as ``sample_grid``,
        zero outside), with the index → [−1, 1] mapping folded into one multiply-add and the
        Hermitian flip into a sign: no complex copy of the grid per call, only the real one of
        ``hermitian_values`` (refinement calls this with ~10⁷ points per batch, so each
        elementwise pass over them counts).
        """
        flip = coords[..., :1] < 0
        kw = dict(dtype=coords.dtype, device=coords.device)
        extent = torch.tensor([self.size // 2 + 1, self.size, self.size], **kw) - 1  # (W, H, D) − 1
        offset = torch.tensor([0.0, self.size // 2, self.size // 2], **kw)
        points = torch.addcmul(2 * offset / extent - 1, torch.where(flip, -coords, coords), 2 * self.size / extent)
        grid = self.hermitian_values().unsqueeze(0)
        out = F.grid_sample(grid, points.reshape(1, 1, 1, -1, 3).to(grid.dtype), mode="bilinear",
                            padding_mode="zeros", align_corners=True)
        out = out.reshape(2, *coords.shape[:-1]) * self.scale
        return torch.complex(out[0], torch.where(flip[..., 0], -out[1], out[1]))
