"""Voxelise any Fourier-space volume model (voxel grid or FourierNet) into a real-space map."""

from __future__ import annotations

import torch

from cryoai.geometry.grids import ifft3_centered


@torch.no_grad()
def volume_to_map(volume, box: int, chunk: int = 1 << 18) -> torch.Tensor:
    """Real-space map (z, y, x) of ``box`` voxels: the model queried on a grid of D = box·oversample
    frequencies, inverse-transformed, and the central box kept (the particle's box)."""
    size = box * getattr(volume, "oversample", 1)
    device = next(volume.parameters()).device
    f = (torch.arange(size, device=device) - size // 2) / size
    kz, ky, kx = torch.meshgrid(f, f, f, indexing="ij")
    coords = torch.stack([kx, ky, kz], -1).reshape(-1, 3)
    values = torch.cat([volume(coords[i : i + chunk]) for i in range(0, len(coords), chunk)])
    real = ifft3_centered(values.reshape(size, size, size).cpu())
    start = size // 2 - box // 2
    return real[start : start + box, start : start + box, start : start + box].contiguous()
