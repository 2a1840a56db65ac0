"""Warm start: ab initio projection matching on a fixed-size subset at a small box.

It gives the trainer an initial volume and poses for the subset, which keep the encoder out of
the in-plane-only collapse. The cost is fixed: it depends on the subset size M and the box b,
never on the size of the data set.

Three stages, each answering a way the plain soft EM (full-batch EM from a random-pose blob with
frequency marching) failed on CTF + shift data and on small particles:

1. **Support.** The subset back-projected at random poses is the particle's rotational average;
   its radial profile gives the radius of a spherical mask the map is confined to. Without a
   tight support, a small particle spreads into an elongated rod or a pseudo-symmetric average
   that explains the low-resolution images as well as the truth does.
2. **Stochastic EM** (minibatch, in the spirit of cryoSPARC's SGD ab initio). Each step matches a
   random batch exhaustively against a rotation grid (coarse at small radius) × a shift grid at
   the current comparison radius, and moves running averages of the Wiener numerator and
   denominator a fraction ``sgd_rate`` towards the batch's back-projection. Full-batch EM locks
   into the first self-consistent wrong map; many small noisy updates do not. Two more things
   keep the search from committing early: a Gaussian prior on the shifts (with a blob-like map
   the data cannot place the particle, and unconstrained shifts blur every update), and a floor
   on the noise level of the E-step (noise is added to the batch's images, never to the
   back-projected ones): on clean data the posterior otherwise becomes nearly hard at once and
   images split between a view and its pseudo-symmetric mate.
3. **Refinement.** ``iterations`` passes over the whole subset on the clean images: the first a
   global search on the fine grid, the rest local (each pose perturbed by a shrinking step,
   shifts by a sub-pixel step), with the radius marching to b/2.

The map is reconstructed each time with a Wiener term relative to each shell
(``wiener_reconstruct(per_shell=True)``): a flat term swamps the low frequencies, where the CTF
is about 0.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import roma
import torch

from cryoai.geometry.grids import half_plane_disc, ifft3_centered, radius_grid_3d
from cryoai.geometry.rotations import euler_to_matrix
from cryoai.physics.backprojection import backproject, confine_to_box, shell_index, wiener_reconstruct
from cryoai.physics.shifts import origin_phase
from cryoai.physics.slicing import SpectrumVolume, slice_coordinates

OVERSAMPLE = 2  # the reconstruction grid is OVERSAMPLE·b per side (accurate trilinear gridding)


@dataclass
class WarmStartResult:
    rotations: torch.Tensor  # (M, 3, 3) best pose per subset image
    origins_px: torch.Tensor  # (M, 2) best origin, in pixels of the warm-start box
    spectrum: torch.Tensor  # (2b, 2b, 2b) complex volume spectrum (oversampled warm-start box)
    history: list[dict]  # per SGD epoch and per refinement iteration: radius, noise variance, …


def rotation_grid(n_directions: int, n_psi: int) -> torch.Tensor:
    """RELION matrices on a near-uniform grid: Fibonacci viewing directions × in-plane angles."""
    i = np.arange(n_directions) + 0.5
    tilt = np.rad2deg(np.arccos(1 - 2 * i / n_directions))
    rot = np.rad2deg(np.mod(i * np.pi * (3 - np.sqrt(5)), 2 * np.pi))
    psi = np.arange(n_psi) * 360.0 / n_psi
    A = euler_to_matrix(rot[:, None], tilt[:, None], psi[None, :])
    return torch.from_numpy(A.reshape(-1, 3, 3)).to(torch.float32)


def shift_grid(max_shift_px: float, step_px: float) -> torch.Tensor:
    """(T, 2) origins on a square grid within a disc of radius ``max_shift_px``."""
    n = int(math.floor(max_shift_px / step_px)) if step_px > 0 else 0
    g = torch.arange(-n, n + 1, dtype=torch.float32) * step_px
    gy, gx = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([gx.flatten(), gy.flatten()], -1)
    return pts[(pts**2).sum(-1) <= max_shift_px**2 + 1e-6]


def local_perturbations(step_deg: float) -> torch.Tensor:
    """(19, 3, 3) small rotations: rotation vectors on a cubic grid of spacing ``step_deg``, the
    centre, its 6 faces and 12 edges (|v| ≤ 1.5 steps); pose R is perturbed to R·Δ."""
    g = torch.arange(-1, 2, dtype=torch.float32)
    v = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    v = v[v.norm(dim=1) <= 1.5] * math.radians(step_deg)
    return roma.rotvec_to_rotmat(v)


def _scores(x, c, volume, rotations, freqs, shifts, chunk=64):
    """Squared errors |x − c·S_t·P_R|² for every (image, shift, rotation), less |x|².

    One matrix product per chunk of m images (``_image_factors`` by ``_projection_factors``,
    inner dimension 3K). Yields (first, E (m, T, R), |x|² (m,)).
    """
    rhs = _projection_factors(volume(slice_coordinates(rotations, freqs)))  # (R, 3K)
    phases = origin_phase(freqs, shifts)  # (T, K)
    for first in range(0, x.shape[0], chunk):
        xs, cs = x[first : first + chunk], c[first : first + chunk]
        lhs = _image_factors(xs, cs, phases)  # (m, T, 3K)
        err = (lhs.reshape(-1, rhs.shape[1]) @ rhs.T).reshape(xs.shape[0], len(shifts), -1)
        yield first, err, (xs.abs() ** 2).sum(1)


def _image_factors(x: torch.Tensor, c: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """Rows [−2·Re w, 2·Im w, c²] with w = conj(x)·c·S_t, for images x and CTFs c (…, K) and
    shift phases (T, K) shared by all images or (…, T, K) per image: (…, T, 3K)."""
    w = (x.conj() * c)[..., None, :] * phases
    return torch.cat([-2 * w.real, 2 * w.imag, (c**2)[..., None, :].expand_as(w.real)], dim=-1)


def _projection_factors(proj: torch.Tensor) -> torch.Tensor:
    """Columns [Re P, Im P, |P|²] of central slices P (…, K): (…, 3K). Their product with
    ``_image_factors`` is |x − c·S_t·P|² − |x|²."""
    return torch.cat([proj.real, proj.imag, proj.abs() ** 2], dim=-1)


def _soft_assign(score: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of (n, H) scores (negative log posteriors, up to a constant): (indices, weights)."""
    s_top, j = torch.topk(score, min(top_k, score.shape[1]), dim=1, largest=False)
    return j, torch.softmax(-(s_top - s_top[:, :1]), dim=1)


def particle_radius(spectrum: torch.Tensor, box: int, level: float = 0.05) -> float | None:
    """Radius (pixels of the warm-start box) where the radial density profile of a rotationally
    averaged map falls below ``level`` × its peak; None when the map has no positive peak."""
    volume = ifft3_centered(spectrum)
    dist = radius_grid_3d(volume.shape[-1])  # one voxel of the padded grid is one image pixel
    radii = torch.arange(0, box / 2 + 1e-3, 0.25)
    profile = torch.stack([volume[(dist >= q - 0.5) & (dist < q + 0.5)].mean() for q in radii])
    peak = int(profile.argmax())
    if profile[peak] <= 0:
        return None
    below = torch.nonzero(profile[peak:] < level * profile[peak]).flatten()
    return float(radii[peak + below[0]]) if len(below) else None


def warm_start(
    spectra: torch.Tensor,
    ctf_values: torch.Tensor,
    box: int,
    radius_start: float = 3.0,
    iterations: int = 14,
    n_directions: int = 600,
    n_psi: int = 36,
    max_shift_px: float = 1.0,
    shift_step_px: float = 0.5,
    top_k: int = 8,
    regularisation: float = 0.05,
    seed: int = 0,
    log=print,
    callback=None,
    *,
    radius_sgd_end: float | None = None,
    sgd_steps: int | None = None,
    sgd_epochs: float = 14.0,
    batch_size: int = 100,
    sgd_rate: float = 0.1,
    noise_floor: float = 0.5,
    shift_sigma_px: float | None = None,
    mask_radius_px: float | None = None,
    mask_margin_px: float = 0.5,
    global_iterations: int = 1,
    local_step_deg: tuple[float, float] = (5.0, 1.5),
    local_shift_px: float = 0.25,
) -> WarmStartResult:
    """Ab initio poses and map for M image spectra at a box-b grid (see the module docstring).

    spectra (M, b, b) centred complex spectra; ctf_values (M, b, b) CTF at the same grid (ones
    when the data has none).

    Stochastic EM: ``sgd_steps`` (default: ``sgd_epochs`` passes over the subset) batches of
    ``batch_size`` images, the radius marching from
    ``radius_start`` to ``radius_sgd_end`` (default 3b/8) Fourier pixels; rotation grids of
    ``n_directions``/4 × ``n_psi``/2, then /2 × 2/3, then the full grid as the radius passes
    0.28 b and 3b/8; running averages moved by ``sgd_rate`` per step. ``noise_floor``: the E-step
    sees the images with noise added up to a total residual variance of ``noise_floor`` × their
    mean power per coefficient (0 turns it off). ``shift_sigma_px``: std of the Gaussian prior on
    origins (default ``max_shift_px``/2; 0 or None with max_shift_px = 0: none).

    Refinement: ``iterations`` full passes, radius marching from ``radius_sgd_end`` to b/2 over
    the first half of them and held there; the first ``global_iterations`` search the full grid,
    the rest search locally with rotation steps shrinking geometrically over ``local_step_deg``
    and shift steps ``local_shift_px``, origins kept within ``max_shift_px``.

    The map is confined to a sphere of ``mask_radius_px`` (default: the particle radius estimated
    from the random-pose reconstruction + ``mask_margin_px``, within [0.2 b, 0.5 b]).
    ``callback(rotations, origins)`` is called after each SGD epoch and refinement pass.
    """
    gen = torch.Generator().manual_seed(seed)
    m = spectra.shape[0]
    full = half_plane_disc(box, box // 2)
    X = spectra.reshape(m, -1)[:, full].to(torch.complex64)
    C = ctf_values.reshape(m, -1)[:, full].to(torch.float32)
    f = torch.arange(box) - box // 2
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    freqs_all = torch.stack([fx.flatten(), fy.flatten()], -1)[full].to(torch.float32) / box
    radii = freqs_all.norm(dim=1) * box

    radius_sgd_end = 3 * box / 8 if radius_sgd_end is None else radius_sgd_end
    shifts = shift_grid(max_shift_px, shift_step_px)
    sigma = max_shift_px / 2 if shift_sigma_px is None else shift_sigma_px
    shift_penalty = (shifts**2).sum(1) / (2 * sigma**2) if sigma > 0 else torch.zeros(len(shifts))
    grids: dict[tuple[int, int], torch.Tensor] = {}

    def grid_for(radius: float) -> torch.Tensor:
        """Coarser rotation grids at small radius, where finer sampling resolves nothing."""
        if radius <= 0.28 * box:
            key = (max(n_directions // 4, 1), max(n_psi // 2, 1))
        elif radius <= 3 * box / 8:
            key = (max(n_directions // 2, 1), max(2 * n_psi // 3, 1))
        else:
            key = (n_directions, n_psi)
        if key not in grids:
            grids[key] = rotation_grid(*key)
        return grids[key]

    mask_fraction = [0.5]

    def reconstruct(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
        spectrum = wiener_reconstruct(numerator, denominator, regularisation, per_shell=True)
        return confine_to_box(spectrum, box, mask_fraction[0])

    # random-pose back-projection: the rotational average, which sizes the support mask
    pick = torch.randint(len(grid_for(radius_start)), (m,), generator=gen)
    best_R = grid_for(radius_start)[pick].clone()
    best_t = torch.zeros(m, 2)
    num, den = backproject(X, best_R, freqs_all, box, C, oversample=OVERSAMPLE)
    if mask_radius_px is None:
        estimate = particle_radius(reconstruct(num, den), box)
        mask_radius_px = 0.5 * box if estimate is None else estimate + mask_margin_px
    mask_fraction[0] = min(max(mask_radius_px / box, 0.2), 0.5)
    log(f"warm start: {m} images at box {box}, support mask radius {mask_fraction[0] * box:.2f} px")
    spectrum = reconstruct(num, den)

    def global_search(x, c, radius, rotations):
        """Exhaustive E-step of images x (n, K_all): top-k (rotations, origins, weights), noise var."""
        keep = radii <= radius
        x, c, freqs = x[:, keep], c[:, keep], freqs_all[keep]
        n, n_shifts, k = x.shape[0], len(shifts), min(top_k, len(rotations))
        cand_err, cand_rot = torch.empty(n, n_shifts, k), torch.empty(n, n_shifts, k, dtype=torch.long)
        for first, err, data in _scores(x, c, SpectrumVolume(spectrum), rotations, freqs, shifts):
            e, i = torch.topk(err, k, dim=2, largest=False)  # best rotations for each shift
            cand_err[first : first + len(e)] = e + data[:, None, None]
            cand_rot[first : first + len(e)] = i
        noise_var = cand_err.amin((1, 2)).mean().clamp_min(1e-12) / keep.sum()  # per coefficient
        score = cand_err / noise_var + shift_penalty[None, :, None]
        j, weights = _soft_assign(score.reshape(n, -1), top_k)
        rot = rotations[cand_rot.reshape(n, -1).gather(1, j)]
        return rot, shifts[j // k], weights, float(noise_var)

    def local_search(radius, step_deg, chunk=256):
        """E-step of all images over their current pose perturbed (rotation R·Δ, origin ± step)."""
        keep = radii <= radius
        freqs, n_coef = freqs_all[keep], keep.sum()
        pert = local_perturbations(step_deg)  # (J, 3, 3)
        g = torch.arange(-1, 2, dtype=torch.float32) * local_shift_px
        dshift = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)  # (S, 2)
        volume = SpectrumVolume(spectrum)
        parts = []
        for first in range(0, m, chunk):
            part = slice(first, min(first + chunk, m))
            x, c = X[part][:, keep], C[part][:, keep]
            n = x.shape[0]
            cand_R = best_R[part][:, None] @ pert[None]  # (n, J, 3, 3)
            cand_t = best_t[part][:, None, :] + dshift[None]  # (n, S, 2)
            norm = cand_t.norm(dim=2, keepdim=True)
            cand_t = torch.where(norm > max_shift_px, cand_t * max_shift_px / norm.clamp_min(1e-12), cand_t)
            proj = volume(slice_coordinates(cand_R.reshape(-1, 3, 3), freqs)).reshape(n, len(pert), -1)
            phases = origin_phase(freqs, cand_t.reshape(-1, 2)).reshape(n, len(dshift), -1)
            lhs, rhs = _image_factors(x, c, phases), _projection_factors(proj)  # (n, S, 3K), (n, J, 3K)
            err = lhs @ rhs.transpose(1, 2) + (x.abs() ** 2).sum(1)[:, None, None]  # (n, S, J)
            parts.append((err.reshape(n, -1), cand_R, cand_t))
        noise_var = torch.cat([p[0].amin(1) for p in parts]).mean().clamp_min(1e-12) / n_coef
        rots, origins, weights = [], [], []
        for err, cand_R, cand_t in parts:
            j, w = _soft_assign(err / noise_var, top_k)
            s_idx, r_idx = j // len(pert), j % len(pert)
            rots.append(cand_R.gather(1, r_idx[..., None, None].expand(-1, -1, 3, 3)))
            origins.append(cand_t.gather(1, s_idx[..., None].expand(-1, -1, 2)))
            weights.append(w)
        return torch.cat(rots), torch.cat(origins), torch.cat(weights), float(noise_var)

    history: list[dict] = []

    def record(stage, radius, noise_var, previous, weights, **extra):
        changed = float((roma.rotmat_geodesic_distance(previous, best_R) > math.radians(5)).float().mean())
        history.append({"stage": stage, "radius": radius, "noise_var": noise_var, "changed": changed,
                        "top1_weight": float(weights[:, 0].mean()), **extra})
        log(f"warm start {stage} {len(history)}: radius {radius:.1f} px, poses changed {100 * changed:.0f}%, "
            f"mean top weight {weights[:, 0].mean():.2f}")
        if callback is not None:
            callback(best_R.clone(), best_t.clone())

    # stochastic EM
    batch = min(batch_size, m)
    sgd_steps = max(1, round(sgd_epochs * m / batch)) if sgd_steps is None else sgd_steps
    epoch = max(1, round(m / batch))
    power = float((X.abs() ** 2).mean())  # mean power per coefficient of the images
    clean_var = 0.0  # estimated residual variance of the clean images at the last step
    previous = best_R.clone()
    for step in range(sgd_steps):
        radius = radius_start + (radius_sgd_end - radius_start) * step / max(sgd_steps - 1, 1)
        idx = torch.randperm(m, generator=gen)[:batch]
        added = max(0.0, noise_floor * power - clean_var)
        noise = torch.complex(torch.randn(batch, X.shape[1], generator=gen), torch.randn(batch, X.shape[1], generator=gen))
        rot, origin, weights, noise_var = global_search(X[idx] + noise * math.sqrt(added / 2), C[idx], radius, grid_for(radius))
        clean_var = max(0.0, noise_var - added)
        best_R[idx], best_t[idx] = rot[:, 0], origin[:, 0]
        k = rot.shape[1]
        nb, db = backproject(X[idx].repeat_interleave(k, 0), rot.reshape(-1, 3, 3), freqs_all, box,
                             C[idx].repeat_interleave(k, 0), origin.reshape(-1, 2), weights.flatten(), oversample=OVERSAMPLE)
        num = (1 - sgd_rate) * num + sgd_rate * (m / batch) * nb
        den = (1 - sgd_rate) * den + sgd_rate * (m / batch) * db
        spectrum = reconstruct(num, den)
        if (step + 1) % epoch == 0 or step == sgd_steps - 1:
            record("sgd", radius, noise_var, previous, weights, step=step + 1, added_noise_var=added)
            previous = best_R.clone()

    # refinement on the whole subset
    n_march = max(1, (iterations + 1) // 2)
    for it in range(iterations):
        radius = radius_sgd_end + (box / 2 - radius_sgd_end) * min(it + 1, n_march) / n_march
        previous = best_R.clone()
        if it < global_iterations:
            rot, origin, weights, noise_var = global_search(X, C, radius, grid_for(radius))
        else:
            n_local = max(iterations - global_iterations - 1, 1)
            frac = (it - global_iterations) / n_local
            step_deg = local_step_deg[0] * (local_step_deg[1] / local_step_deg[0]) ** frac
            rot, origin, weights, noise_var = local_search(radius, step_deg)
        best_R, best_t = rot[:, 0].clone(), origin[:, 0].clone()
        k = rot.shape[1]
        num, den = backproject(X.repeat_interleave(k, 0), rot.reshape(-1, 3, 3), freqs_all, box,
                               C.repeat_interleave(k, 0), origin.reshape(-1, 2), weights.flatten(), oversample=OVERSAMPLE)
        spectrum = reconstruct(num, den)
        record("refine", radius, noise_var, previous, weights)
    return WarmStartResult(best_R, best_t, spectrum, history)
