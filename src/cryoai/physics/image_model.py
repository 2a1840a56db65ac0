"""The image formation model: volume + pose + CTF + shift → particle image (Fourier space).

Ŷ(k) = exp(−2πi k·(−origin)) · CTF(k) · V̂(Aᵀ[k, 0]). One implementation, used by the
simulator, the reconstruction decoder, the warm start and the pose refinement. ``volume`` is any
callable mapping (B, M, 3) frequencies in cycles/pixel to complex values (``FourierMap``, a
voxel grid, FourierNet).

``squared_residuals`` is the same model's misfit |x − CTF·S_t·P_R|² for every combination of
image, shift and slice at once, as one matrix product (exact, not an approximation).
"""

from __future__ import annotations

from typing import Callable

import torch

from cryoai.geometry.grids import freq_grid_2d, ifft2_centered
from cryoai.physics.ctf import CTFParams, ctf
from cryoai.physics.shifts import origin_phase
from cryoai.physics.slicing import project

Volume = Callable[[torch.Tensor], torch.Tensor]


def modulate(
    slices: torch.Tensor,
    freqs: torch.Tensor,
    ctf_values: torch.Tensor | None = None,
    origins_px: torch.Tensor | None = None,
) -> torch.Tensor:
    """The model after slicing: central slices (..., M) times the CTF (..., M) times the phase of
    RELION origins (..., 2) in pixels, at freqs (M, 2) cycles/pixel; the leading shapes broadcast
    (e.g. one slice (B, 1, M) under nine origins (B, 9, 2))."""
    spectra = slices
    if ctf_values is not None:
        spectra = spectra * ctf_values
    if origins_px is not None:
        spectra = spectra * origin_phase(freqs, origins_px.reshape(-1, 2)).reshape(*origins_px.shape[:-1], -1)
    return spectra


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
    return modulate(project(volume, rotations, freqs), freqs, ctf_values, origins_px)


def render_images(
    volume: Volume,
    rotations: torch.Tensor,
    box: int,
    apix: float,
    ctf_params: CTFParams | None = None,
    origins_A: torch.Tensor | None = None,
) -> torch.Tensor:
    """Real-space images (B, L, L) of a volume: full centred grid, then inverse DFT.

    ctf_params: the B particles' CTF or None; origins_A (B, 2) in Å or None.
    """
    freqs = freq_grid_2d(box, rotations.device).reshape(-1, 2)
    ctf_values = ctf(freqs / apix, ctf_params) if ctf_params is not None else None
    origins_px = origins_A / apix if origins_A is not None else None
    spectra = render_spectra(volume, rotations.to(torch.float32), freqs, ctf_values, origins_px)
    return ifft2_centered(spectra.reshape(-1, box, box))


# ---- the misfit of many hypotheses at once ---------------------------------------------------
# |x − c·S·P|² = |x|² − 2·Re(conj(x)·c·S·P) + c²·|P|², summed over k, is the inner product of a
# row built from the image side (x, c, S) with a column built from the slice P: one matrix
# product scores every (shift, slice) pair of every image.

def image_factors(x: torch.Tensor, c: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """Rows [−2·Re w, 2·Im w, c²] with w = conj(x)·c·S_t, for images x and CTFs c (…, K) and
    shift phases S_t (T, K) shared by all images or (…, T, K) per image: (…, T, 3K)."""
    w = (x.conj() * c)[..., None, :] * phases
    return torch.cat([-2 * w.real, 2 * w.imag, (c**2)[..., None, :].expand_as(w.real)], dim=-1)


def slice_factors(slices: torch.Tensor) -> torch.Tensor:
    """Columns [Re P, Im P, |P|²] of central slices P (…, K): (…, 3K)."""
    return torch.cat([slices.real, slices.imag, slices.abs() ** 2], dim=-1)


def factored_residuals(lhs: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """|x − c·S_t·P_r|² − |x|² from ``image_factors`` lhs (n, T, 3K) and ``slice_factors`` rhs,
    shared (R, 3K) or per image (n, R, 3K): (n, T, R)."""
    if rhs.dim() == 2:
        return (lhs.reshape(-1, rhs.shape[1]) @ rhs.T).reshape(lhs.shape[0], lhs.shape[1], -1)
    return lhs @ rhs.transpose(1, 2)


def squared_residuals(x: torch.Tensor, c: torch.Tensor, phases: torch.Tensor, slices: torch.Tensor) -> torch.Tensor:
    """Σ_k |x − c·S_t·P_r|² for images x (n, K) with CTFs c (n, K), shift phases (T, K) or
    (n, T, K) and slices (R, K) or (n, R, K): (n, T, R), the residual of ``modulate``."""
    err = factored_residuals(image_factors(x, c, phases), slice_factors(slices))
    return err + (x.abs() ** 2).sum(-1)[:, None, None]


def model_power(c: torch.Tensor, slices: torch.Tensor) -> torch.Tensor:
    """Σ_k c²·|P|², the power of the model c·S·P (a shift does not change it), for CTFs c (n, K)
    and slices shared (R, K) or per image (n, R, K): (n, 1, R), to broadcast over shifts."""
    power = slices.abs() ** 2
    if power.dim() == 2:
        return ((c**2) @ power.T)[:, None]
    return torch.einsum("nk,nrk->nr", c**2, power)[:, None]


def rescaled_residuals(err: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
    """min over a ≥ 0 of |x − a·c·S·P|² − |x|², from the residual at a = 1 (``factored_residuals``,
    err = power − 2·cross) and the model's ``model_power``: −max(cross, 0)²/power, the fit with a
    free amplitude per image and hypothesis (contrast, ice thickness and defocus errors scale
    the particle's image; at the best a the misfit does not read that as pose evidence)."""
    cross = (power - err) / 2
    return -cross.clamp_min(0) ** 2 / power.clamp_min(1e-30)
