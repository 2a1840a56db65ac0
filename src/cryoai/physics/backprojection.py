"""The adjoint of slicing: back-projection of image spectra into a 3D Fourier grid, and a
Wiener-regularised direct Fourier reconstruction from it."""

from __future__ import annotations

import torch

from cryoai.physics.shifts import origin_phase
from cryoai.physics.slicing import slice_coordinates


def _splat(grid: torch.Tensor, index_xyz: torch.Tensor, values: torch.Tensor) -> None:
    """Trilinear splatting (the adjoint of trilinear interpolation) of values at fractional
    (x, y, z) indices into a flat view of ``grid`` (D, D, D), in place; outside points dropped."""
    size = grid.shape[-1]
    flat = grid.view(-1)
    base = torch.floor(index_xyz)
    frac = index_xyz - base
    base = base.long()
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                corner = base + torch.tensor([dx, dy, dz], device=base.device)
                w = ((frac[..., 0] if dx else 1 - frac[..., 0]) * (frac[..., 1] if dy else 1 - frac[..., 1])
                     * (frac[..., 2] if dz else 1 - frac[..., 2]))
                inside = ((corner >= 0) & (corner < size)).all(-1)
                idx = (corner[..., 2] * size + corner[..., 1]) * size + corner[..., 0]
                flat.index_add_(0, idx[inside], (w * values)[inside].to(flat.dtype))


def backproject(
    spectra: torch.Tensor,
    rotations: torch.Tensor,
    freqs: torch.Tensor,
    box: int,
    ctf_values: torch.Tensor | None = None,
    origins_px: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    into: tuple[torch.Tensor, torch.Tensor] | None = None,
    oversample: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accumulate Σ w·CTF·X̂ and Σ w·CTF² on a centred grid of size D = oversample·L at the
    slice positions (a frequency k in cycles/pixel sits at index k·D + D//2, as in
    ``SpectrumVolume``; oversampling makes trilinear gridding accurate).

    spectra (n, K) complex at freqs (K, 2) cycles/pixel; rotations (n, 3, 3); ctf_values (n, K);
    origins_px (n, 2); weights (n,). Both k and −k are filled (Hermitian symmetry).
    Returns (numerator complex64, denominator float32), added to ``into`` when given.
    """
    size = box * oversample
    if into is None:
        into = (torch.zeros((size,) * 3, dtype=torch.complex64), torch.zeros((size,) * 3))
    numerator, denominator = into
    x = spectra.to(torch.complex64)
    if origins_px is not None:
        x = x * origin_phase(freqs, origins_px).conj()  # undo the particle's shift
    c = ctf_values if ctf_values is not None else torch.ones(x.shape, dtype=torch.float32)
    w = weights[:, None] if weights is not None else 1.0
    num = (w * c) * x
    den = (w * c * c).expand(x.shape).contiguous()
    coords = slice_coordinates(rotations.to(torch.float32), freqs) * size
    index, mirror = coords + size // 2, -coords + size // 2
    real, imag = torch.zeros((size,) * 3), torch.zeros((size,) * 3)
    for idx, values in ((index, num), (mirror, num.conj())):
        _splat(real, idx, values.real)
        _splat(imag, idx, values.imag)
        _splat(denominator, idx, den)
    return numerator + torch.complex(real, imag), denominator


def wiener_reconstruct(numerator: torch.Tensor, denominator: torch.Tensor, regularisation: float = 0.01) -> torch.Tensor:
    """Spectrum Σ w·CTF·X̂ / (Σ w·CTF² + λ), λ = ``regularisation`` × the mean of the occupied
    denominator: a direct Fourier inversion with a flat Wiener term against empty voxels."""
    occupied = denominator[denominator > 0]
    lam = regularisation * (occupied.mean() if len(occupied) else 1.0)
    return numerator / (denominator + lam)


def confine_to_box(spectrum: torch.Tensor, box: int, radius_fraction: float = 0.5) -> torch.Tensor:
    """Zero a reconstructed map outside a soft sphere of ``radius_fraction``·box pixels about the
    centre (real space), and return the spectrum again.

    A spectrum gridded at oversampling D/box > 1 from box-sized images holds replicas of the
    object in the padded box; the particle lies inside the central box, so the rest is removed.
    """
    from cryoai.geometry.grids import fft3_centered, ifft3_centered

    size = spectrum.shape[-1]
    volume = ifft3_centered(spectrum)
    r = torch.arange(size, dtype=torch.float32) - size // 2
    rz, ry, rx = torch.meshgrid(r, r, r, indexing="ij")
    dist = torch.sqrt(rx**2 + ry**2 + rz**2)  # a padded-grid voxel is one image pixel wide
    radius = radius_fraction * box
    edge = max(1.0, 0.1 * radius)
    mask = torch.clamp((radius - dist) / edge, 0.0, 1.0)
    return fft3_centered(volume * mask).to(torch.complex64)
