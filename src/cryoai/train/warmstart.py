"""Warm start: soft-EM projection matching on a fixed-size subset at a small box.

An ab initio EM in the style of RELION/cryoSPARC, but on a subset of fixed size (it does not
grow with the data set), at a coarse box, with a fixed grid of rotations and shifts, top-k
soft assignment and frequency marching. It gives the trainer an initial volume and poses for
the subset, which keep the encoder out of the in-plane-only collapse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cryoai.geometry.grids import half_plane_disc
from cryoai.geometry.rotations import euler_to_matrix
from cryoai.physics.backprojection import backproject, confine_to_box, wiener_reconstruct
from cryoai.physics.shifts import origin_phase
from cryoai.physics.slicing import SpectrumVolume, slice_coordinates


@dataclass
class WarmStartResult:
    rotations: torch.Tensor  # (M, 3, 3) best pose per subset image
    origins_px: torch.Tensor  # (M, 2) best origin, in pixels of the warm-start box
    spectrum: torch.Tensor  # (b, b, b) complex volume spectrum at the warm-start box
    history: list[dict]  # per iteration: radius, noise variance, changes


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
    n = int(math.floor(max_shift_px / step_px))
    g = torch.arange(-n, n + 1, dtype=torch.float32) * step_px
    gy, gx = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([gx.flatten(), gy.flatten()], -1)
    return pts[(pts**2).sum(-1) <= max_shift_px**2 + 1e-6]


def _scores(x, c, volume, rotations, freqs, shifts, chunk=64):
    """Squared errors for every (image, shift, rotation): yields per chunk (first, E (m, T, R))."""
    proj = volume(slice_coordinates(rotations, freqs))  # (R, K)
    proj_ri = torch.cat([proj.real, proj.imag], dim=1)  # (R, 2K)
    power = proj.abs() ** 2  # (R, K)
    phases = origin_phase(freqs, shifts)  # (T, K)
    for first in range(0, x.shape[0], chunk):
        xs, cs = x[first : first + chunk], c[first : first + chunk]
        w = (xs.conj() * cs)[:, None, :] * phases[None]  # (m, T, K)
        w_ri = torch.cat([w.real, -w.imag], dim=2).reshape(-1, proj_ri.shape[1])
        cross = (w_ri @ proj_ri.T).reshape(xs.shape[0], len(shifts), -1)  # Re⟨x, c·S·P⟩
        norm = (cs**2) @ power.T  # (m, R)
        data = (xs.abs() ** 2).sum(1)
        yield first, data[:, None, None] - 2 * cross + norm[:, None, :]


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
) -> WarmStartResult:
    """Projection matching of M image spectra at a box-b grid.

    spectra (M, b, b) centred complex spectra; ctf_values (M, b, b) CTF at the same grid (ones
    when the data has none). The radius marches from ``radius_start`` to b/2 Fourier pixels.
    """
    gen = torch.Generator().manual_seed(seed)
    m = spectra.shape[0]
    rotations = rotation_grid(n_directions, n_psi)
    shifts = shift_grid(max_shift_px, shift_step_px)
    full = half_plane_disc(box, box // 2)
    flat_spectra = spectra.reshape(m, -1)[:, full]
    flat_ctf = ctf_values.reshape(m, -1)[:, full]
    f = torch.arange(box) - box // 2
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    freqs_all = torch.stack([fx.flatten(), fy.flatten()], -1)[full].to(torch.float32) / box
    radii = freqs_all.norm(dim=1) * box

    # initial volume: the subset back-projected at random poses (a smooth blob)
    pick = torch.randint(len(rotations), (m,), generator=gen)
    num, den = backproject(flat_spectra, rotations[pick], freqs_all, box, flat_ctf, oversample=2)
    spectrum = confine_to_box(wiener_reconstruct(num, den, regularisation), box)
    best_r = torch.zeros(m, dtype=torch.long)
    best_t = torch.zeros(m, dtype=torch.long)
    history = []
    for it in range(iterations):
        radius = radius_start + (box / 2 - radius_start) * it / max(iterations - 1, 1)
        keep = radii <= radius
        x, c, freqs = flat_spectra[:, keep], flat_ctf[:, keep], freqs_all[keep]
        volume = SpectrumVolume(spectrum)
        top_err = torch.empty(m, top_k)
        top_idx = torch.empty(m, top_k, dtype=torch.long)
        for first, err in _scores(x, c, volume, rotations, freqs, shifts):
            e, i = torch.topk(err.reshape(err.shape[0], -1), top_k, dim=1, largest=False)
            top_err[first : first + len(e)], top_idx[first : first + len(e)] = e, i
        noise_var = top_err[:, 0].mean().clamp_min(1e-12) / keep.sum()  # per complex coefficient
        weights = torch.softmax(-(top_err - top_err[:, :1]) / noise_var, dim=1)
        t_idx, r_idx = top_idx // len(rotations), top_idx % len(rotations)
        changed = (r_idx[:, 0] != best_r).float().mean().item()
        best_r, best_t = r_idx[:, 0], t_idx[:, 0]
        num, den = backproject(
            flat_spectra.repeat_interleave(top_k, 0), rotations[r_idx.flatten()], freqs_all, box,
            flat_ctf.repeat_interleave(top_k, 0), shifts[t_idx.flatten()], weights.flatten(), oversample=2,
        )
        spectrum = confine_to_box(wiener_reconstruct(num, den, regularisation), box)
        if callback is not None:
            callback(rotations[best_r], shifts[best_t])
        history.append({"iteration": it, "radius": radius, "noise_var": float(noise_var),
                        "changed": changed, "top1_weight": float(weights[:, 0].mean())})
        log(f"warm start {it + 1}/{iterations}: radius {radius:.1f} px, poses changed {100 * changed:.0f}%, "
            f"mean top weight {weights[:, 0].mean():.2f}")
    return WarmStartResult(rotations[best_r], shifts[best_t], spectrum, history)
