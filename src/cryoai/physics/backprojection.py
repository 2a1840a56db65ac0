"""The adjoint of slicing: back-projection of image spectra into a 3D Fourier grid, and a
Wiener-regularised direct Fourier reconstruction from it."""

from __future__ import annotations

import numpy as np
import torch

from cryoai.geometry.grids import fft3_centered, ifft3_centered, radius_grid_3d
from cryoai.physics.shifts import origin_phase
from cryoai.physics.slicing import sample_grid, slice_coordinates


def _splat(grid: torch.Tensor, index_xyz: torch.Tensor, values: torch.Tensor) -> None:
    """Trilinear splatting (the adjoint of trilinear interpolation) of values at fractional
    (x, y, z) indices into ``grid`` (D, D, D, C), in place; values (..., C) real, one column per
    channel (all channels share the corner indices and weights); points outside are dropped.

    The corners are accumulated into a grid padded by one voxel on each side, so no corner needs
    a bounds test; the padding (where corners outside the grid land) is discarded.
    """
    size = grid.shape[0]
    padded_size = size + 2
    channels = values.shape[-1]
    index_xyz = index_xyz.reshape(-1, 3) + 1  # padded indices
    values = values.reshape(-1, channels)
    base = torch.floor(index_xyz)
    frac = index_xyz - base
    base = base.long()
    usable = ((base >= 0) & (base <= size)).all(-1)  # both corners of each axis lie in the padded grid
    if not bool(usable.all()):
        base, frac, values = base[usable], frac[usable], values[usable]
    flat_base = (base[:, 2] * padded_size + base[:, 1]) * padded_size + base[:, 0]
    padded = torch.zeros(padded_size**3, channels, dtype=grid.dtype)
    for dz in (0, 1):
        wz = frac[:, 2] if dz else 1 - frac[:, 2]
        for dy in (0, 1):
            wzy = wz * (frac[:, 1] if dy else 1 - frac[:, 1])
            for dx in (0, 1):
                w = wzy * (frac[:, 0] if dx else 1 - frac[:, 0])
                offset = (dz * padded_size + dy) * padded_size + dx
                padded.index_add_(0, flat_base + offset, (w[:, None] * values).to(grid.dtype))
    padded = padded.view(padded_size, padded_size, padded_size, channels)
    grid += padded[1:-1, 1:-1, 1:-1]


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
    accumulated = torch.zeros((size,) * 3 + (3,))  # real, imaginary part of Σ w·CTF·X̂; Σ w·CTF²
    for idx, values in ((index, num), (mirror, num.conj())):
        _splat(accumulated, idx, torch.stack([values.real, values.imag, den], -1))
    numerator = numerator + torch.complex(accumulated[..., 0], accumulated[..., 1])
    return numerator, denominator + accumulated[..., 2]


def symmetrise_sums(
    numerator: torch.Tensor, denominator: torch.Tensor, operators: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-projected sums (``backproject``) as if each image had also been inserted at every
    pose equivalent under a point group: Σ_S N(Sᵀq) and Σ_S D(Sᵀq) over the operators S (K, 3, 3)
    (e.g. ``cryoai.geometry.symmetry.point_group``, the identity among them).

    For a map with V(S·u) = V(u), an image at pose A is also an image at A·Sᵀ, whose slice sits
    at S·q for each q of A's slice; so inserting it there puts N(q) at S·q, which is reading the
    sums at Sᵀ·q. The grids are read trilinearly about the centre index D//2 (frequencies that
    turn outside the grid read 0); the sums, not the mean, keep the weights of K insertions, so
    the Wiener term (``wiener_reconstruct``) is what the expanded data set would give.
    """
    size = numerator.shape[0]
    i = torch.arange(size, dtype=torch.float32) - size // 2
    z, y, x = torch.meshgrid(i, i, i, indexing="ij")
    q = torch.stack([x, y, z], dim=-1).reshape(-1, 3)
    both = torch.complex(numerator.real.to(torch.float32), numerator.imag.to(torch.float32))
    weights = torch.complex(denominator.to(torch.float32), torch.zeros_like(denominator, dtype=torch.float32))
    num = torch.zeros(size**3, dtype=torch.complex64)
    den = torch.zeros(size**3)
    for S in operators.to(torch.float32):
        index = q @ S + size // 2  # rows qᵀ·S = (Sᵀq)ᵀ, as (x, y, z) indices
        num += sample_grid(both, index)
        den += sample_grid(weights, index).real
    return num.view(size, size, size), den.view(size, size, size)


def shell_index(size: int) -> torch.Tensor:
    """(D, D, D) integer radius (rounded, in voxels) of each voxel of a centred grid of size D."""
    return radius_grid_3d(size).round().long()


def wiener_reconstruct(
    numerator: torch.Tensor, denominator: torch.Tensor, regularisation: float = 0.01, per_shell: bool = False
) -> torch.Tensor:
    """Spectrum Σ w·CTF·X̂ / (Σ w·CTF² + λ): a direct Fourier inversion with a Wiener term.

    λ = ``regularisation`` × the mean of the occupied denominator, over the whole grid (flat), or
    with ``per_shell`` over each shell of constant radius (λ then scales with the local Σ w·CTF²).
    A flat λ swamps the shells where the data carry little weight: with a CTF, the lowest
    frequencies (CTF ≈ amplitude contrast ≈ 0.1, so CTF² ≈ 0.01) are shrunk by about half, which
    takes the low-resolution shape out of the map; relative to the shell, every shell keeps the
    same gain Σ/(Σ + λ) ≈ 1/(1 + regularisation) where it is covered.
    """
    if not per_shell:
        occupied = denominator[denominator > 0]
        lam = regularisation * (occupied.mean() if len(occupied) else 1.0)
        return numerator / (denominator + lam)
    shells = shell_index(denominator.shape[-1]).flatten()
    n = int(shells.max()) + 1
    total = torch.zeros(n).index_add_(0, shells, denominator.flatten().to(torch.float32))
    count = torch.zeros(n).index_add_(0, shells, (denominator > 0).flatten().to(torch.float32))
    lam = regularisation * total / count.clamp_min(1)
    covered = count > 0
    lam = torch.where(covered, lam, lam[covered].min() if bool(covered.any()) else torch.tensor(1.0))
    lam = lam.clamp_min(1e-12)  # an occupied shell whose weights are all zero
    return numerator / (denominator + lam[shells].view_as(denominator))


def confine_to_box(spectrum: torch.Tensor, box: int, radius_fraction: float = 0.5) -> torch.Tensor:
    """Zero a reconstructed map outside a soft sphere of ``radius_fraction``·box pixels about the
    centre (real space), and return the spectrum again.

    A spectrum gridded at oversampling D/box > 1 from box-sized images holds replicas of the
    object in the padded box; the particle lies inside the central box, so the rest is removed.
    """
    volume = ifft3_centered(spectrum)
    dist = radius_grid_3d(spectrum.shape[-1])  # a padded-grid voxel is one image pixel wide
    radius = radius_fraction * box
    edge = max(1.0, 0.1 * radius)
    mask = torch.clamp((radius - dist) / edge, 0.0, 1.0)
    return fft3_centered(volume * mask).to(torch.complex64)


def spectrum_to_map(spectrum: torch.Tensor, box: int) -> np.ndarray:
    """The real-space (z, y, x) map of ``box`` voxels at the centre of a centred (D, D, D)
    spectrum (one voxel of an oversampled grid is one image pixel, as in ``confine_to_box``)."""
    real = ifft3_centered(spectrum).real
    start = spectrum.shape[-1] // 2 - box // 2
    return real[start : start + box, start : start + box, start : start + box].numpy().astype(np.float32)


def reconstruct_in_box(numerator: torch.Tensor, denominator: torch.Tensor, box: int, regularisation: float,
                       per_shell: bool = False, support_fraction: float = 0.5) -> torch.Tensor:
    """The map's spectrum from back-projected sums (``backproject``): Wiener-regularised
    (``wiener_reconstruct``, flat or per shell), then confined to a sphere of
    ``support_fraction``·box pixels (``confine_to_box``; 0.5: the box's inscribed sphere)."""
    spectrum = wiener_reconstruct(numerator, denominator, regularisation, per_shell=per_shell)
    return confine_to_box(spectrum, box, support_fraction)
