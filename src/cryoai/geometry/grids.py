"""Centred frequency grids and FFT helpers (see ``conventions.py``)."""

from __future__ import annotations

import torch


def freq_indices(box: int, device=None) -> torch.Tensor:
    """Integer frequencies of a centred axis: i − L//2 for i = 0 … L−1."""
    return torch.arange(box, device=device) - box // 2


def freq_grid_2d(box: int, device=None) -> torch.Tensor:
    """(L, L, 2) centred frequencies (kx, ky) in cycles per pixel, indexed [y, x]."""
    f = freq_indices(box, device).to(torch.float32) / box
    ky, kx = torch.meshgrid(f, f, indexing="ij")
    return torch.stack([kx, ky], dim=-1)


def fft2_centered(images: torch.Tensor) -> torch.Tensor:
    """Centred 2D DFT of real images (..., L, L): the origin at pixel L//2 and DC at index L//2."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(images, dim=(-2, -1))), dim=(-2, -1))


def ifft2_centered(spectra: torch.Tensor) -> torch.Tensor:
    """Inverse of ``fft2_centered``; returns the real part."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(spectra, dim=(-2, -1))), dim=(-2, -1)).real


def fft3_centered(volume: torch.Tensor) -> torch.Tensor:
    """Centred 3D DFT of a real map (z, y, x)."""
    dims = (-3, -2, -1)
    return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(volume, dim=dims), dim=dims), dim=dims)


def ifft3_centered(spectrum: torch.Tensor) -> torch.Tensor:
    """Inverse of ``fft3_centered``; returns the real part."""
    dims = (-3, -2, -1)
    return torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(spectrum, dim=dims), dim=dims), dim=dims).real


def half_plane_disc(box: int, radius: float, device=None) -> torch.Tensor:
    """Flat indices into an (L, L) centred spectrum of the pixels with |f| ≤ radius (Fourier
    pixels) on one half plane (fx > 0, or fx = 0 and fy ≥ 0); the other half is their conjugate
    mirror for a real image. Sorted by radius, so a prefix is a smaller disc."""
    f = freq_indices(box, device)
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    r2 = (fx**2 + fy**2).flatten()
    keep = ((fx > 0) | ((fx == 0) & (fy >= 0))).flatten() & (r2 <= radius**2)
    idx = torch.nonzero(keep).squeeze(1)
    return idx[torch.argsort(r2[idx], stable=True)]


def radius_grid_3d(size: int, device=None) -> torch.Tensor:
    """(D, D, D) distance of every voxel from the centre voxel D//2 (voxels)."""
    f = freq_indices(size, device).to(torch.float32)
    z, y, x = torch.meshgrid(f, f, f, indexing="ij")
    return torch.sqrt(x**2 + y**2 + z**2)

