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
Junk (the subset holds the data's share; it fits worst): from a third of the SGD on (``prune_from``), the map is made
from the best-fitting ``fit_fraction`` of each batch, after the first refinement pass of the subset.

The map is reconstructed each time with a Wiener term relative to each shell
(``reconstruct_in_box(per_shell=True)``): a flat term swamps the low frequencies, where the CTF
is about 0.1. Poses are scored with the image model's residual in its factorised form
(``physics.image_model.squared_residuals``) and the map is the adjoint's reconstruction
(``physics.backprojection``): nothing of the forward model is written here.

Point group (``symmetry`` not C1): the stochastic EM runs in C1 (from random poses, a map held
symmetric about fixed axes settled in wrong maps: 71° median error on the 3J9G ring under C6 at
box 64, against 4.5° in C1); then the group's axes are found in its map (``align_to_group``),
the poses are turned onto RELION's orientation, and the refinement runs under the group: every
map from sums symmetrised over it, grids of the poses viewing its asymmetric unit only, poses
returned folded into it.

``warm_start(spectra, ctf_values, box, WarmStartConfig(...))`` runs it; ``WarmStart`` holds the
state (the subset, the current poses, the back-projected sums and the map) and has one method per
stage, in the order they run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import roma
import torch

from cryoai.eval.symmetry_search import find_symmetry_frame
from cryoai.geometry.grids import half_plane_disc, ifft3_centered, radius_grid_3d
from cryoai.geometry.rotations import euler_to_matrix
from cryoai.geometry.symmetry import canonical_symbol, group_order, in_asymmetric_unit, point_group, to_asymmetric_unit
from cryoai.physics.backprojection import backproject, reconstruct_in_box, spectrum_to_map, symmetrise_sums
from cryoai.physics.image_model import (factored_residuals, image_factors, model_power, modulate, rescaled_residuals,
                                        slice_factors)
from cryoai.physics.shifts import origin_phase
from cryoai.physics.slicing import SpectrumVolume, project
from cryoai.train.scores import correlation

OVERSAMPLE = 2  # the reconstruction grid is OVERSAMPLE·b per side (accurate trilinear gridding)


@dataclass
class WarmStartConfig:
    """Settings of the warm start; radii are in Fourier pixels of the box-b grid, shifts in its
    pixels.

    Stochastic EM: ``sgd_steps`` (default: ``sgd_epochs`` passes over the subset) batches of
    ``batch_size`` images, the radius marching from ``radius_start_px`` to ``radius_sgd_end_px``
    (default 3b/8); rotation grids of ``n_directions``/4 × ``n_psi``/2, then /2 × 2/3, then the
    full grid as the radius passes 0.28 b and 3b/8; running averages moved by ``sgd_rate`` per
    step. ``noise_floor``: the E-step sees the images with noise added up to a total residual
    variance of ``noise_floor`` × their mean power per coefficient (0 turns it off).
    ``shift_sigma_px``: std of the Gaussian prior on origins (default ``max_shift_px``/2; 0, or
    None with max_shift_px = 0: none). ``top_k`` poses per image share its weight.

    Refinement: ``iterations`` full passes, radius marching from ``radius_sgd_end_px`` to b/2
    over the first half of them and held there; the first ``global_iterations`` search the full
    grid, the rest search locally with rotation steps shrinking geometrically over
    ``local_step_deg`` and shift steps ``local_shift_px``, origins kept within ``max_shift_px``.
    ``fit_fraction``: the share of the best-fitting images the map is made from (module docstring; 1: all).

    The map: Wiener term ``regularisation`` relative to each shell, confined to a sphere of
    ``mask_radius_px`` (default: the particle radius estimated from the random-pose
    reconstruction + ``mask_margin_px``, within [0.2 b, 0.5 b]). ``seed`` seeds every draw.
    ``symmetry``: the particle's point group (RELION's symbol; module docstring).
    """

    radius_start_px: float = 3.0
    iterations: int = 14
    n_directions: int = 600
    n_psi: int = 36
    max_shift_px: float = 1.0
    shift_step_px: float = 0.5
    top_k: int = 8
    regularisation: float = 0.05
    seed: int = 0
    radius_sgd_end_px: float | None = None
    sgd_steps: int | None = None
    sgd_epochs: float = 14.0
    batch_size: int = 100
    sgd_rate: float = 0.1
    noise_floor: float = 0.5
    shift_sigma_px: float | None = None
    mask_radius_px: float | None = None
    mask_margin_px: float = 0.5
    global_iterations: int = 1
    local_step_deg: tuple[float, float] = (5.0, 1.5)
    local_shift_px: float = 0.25
    fit_fraction: float = 0.8
    prune_from: float = 1 / 3  # of the SGD steps: from there on each batch's map is made from its fit_fraction
    deadline: float | None = None  # time.time() by which to end (a time limit): see ``warm_start``
    free_amplitude: bool = False  # poses scored at each image's best amplitude (``image_model.rescaled_residuals``)
    symmetry: str = "C1"


@dataclass
class WarmStartResult:
    rotations: torch.Tensor  # (M, 3, 3) best pose per subset image (in the group's asymmetric unit)
    origins_px: torch.Tensor  # (M, 2) best origin, in pixels of the warm-start box
    spectrum: torch.Tensor  # (2b, 2b, 2b) complex volume spectrum (oversampled warm-start box)
    history: list[dict]  # per SGD epoch and per refinement iteration: radius, noise variance, …
    axes_score: float | None = None  # under a point group: the C1 map's symmetry score about the axes found


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


def warm_start(spectra: torch.Tensor, ctf_values: torch.Tensor, box: int,
               config: WarmStartConfig | None = None, log=print, callback=None) -> WarmStartResult:
    """Ab initio poses and map for M image spectra at a box-b grid (see the module docstring).

    spectra (M, b, b) centred complex spectra; ctf_values (M, b, b) CTF at the same grid (ones
    when the data has none). ``callback(rotations, origins)`` is called after each SGD epoch and
    refinement pass. With ``config.deadline``, the stochastic EM ends once three quarters of the
    time to it are spent and the refinement passes after the first once it has passed.
    """
    state = WarmStart(spectra, ctf_values, box, config or WarmStartConfig(), log, callback)
    state.estimate_support()
    state.stochastic_em()
    state.align_to_group()
    state.refine()
    rotations = state.rotations
    if state.operators is not None:
        rotations = torch.from_numpy(to_asymmetric_unit(rotations.double().numpy(), state.cfg.symmetry)).float()
    return WarmStartResult(rotations, state.origins, state.spectrum, state.history, state.axes_score)


class WarmStart:
    """One warm start's state: the subset (spectra X and CTFs C on the half-plane disc of the
    box-b grid), the current best poses, the back-projected sums and the map reconstructed from
    them. The methods are the stages, in the order ``warm_start`` calls them."""

    def __init__(self, spectra: torch.Tensor, ctf_values: torch.Tensor, box: int, config: WarmStartConfig,
                 log=print, callback=None):
        cfg = self.cfg = config
        self.box, self.log, self.callback = box, log, callback
        self.gen = torch.Generator().manual_seed(cfg.seed)
        m = self.m = spectra.shape[0]
        full = half_plane_disc(box, box // 2)
        self.X = spectra.reshape(m, -1)[:, full].to(torch.complex64)
        self.C = ctf_values.reshape(m, -1)[:, full].to(torch.float32)
        f = torch.arange(box) - box // 2
        fy, fx = torch.meshgrid(f, f, indexing="ij")
        self.freqs = torch.stack([fx.flatten(), fy.flatten()], -1)[full].to(torch.float32) / box  # (K, 2) cycles/px
        self.radii = self.freqs.norm(dim=1) * box  # Fourier pixels
        self.radius_sgd_end = 3 * box / 8 if cfg.radius_sgd_end_px is None else cfg.radius_sgd_end_px
        self.shifts = shift_grid(cfg.max_shift_px, cfg.shift_step_px)
        sigma = cfg.max_shift_px / 2 if cfg.shift_sigma_px is None else cfg.shift_sigma_px
        self.shift_penalty = (self.shifts**2).sum(1) / (2 * sigma**2) if sigma > 0 else torch.zeros(len(self.shifts))
        self.grids: dict[tuple[int, int], torch.Tensor] = {}
        self.support_fraction = 0.5  # of the box: the radius of the spherical support
        self.rotations = torch.empty(m, 3, 3)  # current best pose of each image
        self.origins = torch.zeros(m, 2)  # px
        self.numerator = self.denominator = self.spectrum = None
        self.operators = None  # the point group's (K, 3, 3), from ``align_to_group`` on; None: C1
        self.axes_score = None  # the C1 map's score about the group's axes found (``align_to_group``)
        self.history: list[dict] = []

    # ---- the map ------------------------------------------------------------------------------
    def rotation_grid_for(self, radius: float) -> torch.Tensor:
        """Coarser rotation grids at small radius, where finer sampling resolves nothing; under a group, its unit only."""
        cfg, box = self.cfg, self.box
        if radius <= 0.28 * box:
            key = (max(cfg.n_directions // 4, 1), max(cfg.n_psi // 2, 1))
        elif radius <= 3 * box / 8:
            key = (max(cfg.n_directions // 2, 1), max(2 * cfg.n_psi // 3, 1))
        else:
            key = (cfg.n_directions, cfg.n_psi)
        if key not in self.grids:
            grid = rotation_grid(*key)
            self.grids[key] = grid if self.operators is None else grid[in_asymmetric_unit(grid.numpy(), cfg.symmetry)]
        return self.grids[key]

    def backproject(self, x: torch.Tensor, c: torch.Tensor, rotations: torch.Tensor, origins: torch.Tensor,
                    weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sums of images x, CTFs c (n, K) at their top-k poses (n, k, 3, 3), (n, k, 2) with weights (n, k)."""
        k = rotations.shape[1]
        return backproject(x.repeat_interleave(k, 0), rotations.reshape(-1, 3, 3), self.freqs, self.box,
                           c.repeat_interleave(k, 0), origins.reshape(-1, 2), weights.flatten(), oversample=OVERSAMPLE)

    def reconstruct(self) -> torch.Tensor:
        """The map from the current sums (symmetrised once ``align_to_group`` set a group): per-shell
        Wiener, within the spherical support."""
        numerator, denominator = self.numerator, self.denominator
        if self.operators is not None:
            numerator, denominator = symmetrise_sums(numerator, denominator, self.operators)
        return reconstruct_in_box(numerator, denominator, self.box, self.cfg.regularisation,
                                  per_shell=True, support_fraction=self.support_fraction)

    # ---- stage 1: the support -----------------------------------------------------------------
    def estimate_support(self) -> None:
        """Back-project the subset at random poses (the particle's rotational average) and size
        the spherical support from its radial profile; start the map there."""
        cfg, box = self.cfg, self.box
        grid = self.rotation_grid_for(cfg.radius_start_px)
        pick = torch.randint(len(grid), (self.m,), generator=self.gen)
        self.rotations = grid[pick].clone()
        self.numerator, self.denominator = backproject(self.X, self.rotations, self.freqs, box, self.C,
                                                       oversample=OVERSAMPLE)
        mask_radius_px = cfg.mask_radius_px
        if mask_radius_px is None:
            estimate = particle_radius(self.reconstruct(), box)
            mask_radius_px = 0.5 * box if estimate is None else estimate + cfg.mask_margin_px
        self.support_fraction = min(max(mask_radius_px / box, 0.2), 0.5)
        self.log(f"warm start: {self.m} images at box {box}, support mask radius {self.support_fraction * box:.2f} px")
        self.spectrum = self.reconstruct()

    # ---- stage 2: stochastic EM ---------------------------------------------------------------
    def stochastic_em(self) -> None:
        """Minibatch EM with the radius marching, noise added up to the floor in the E-step, and
        running averages of the back-projected sums."""
        cfg, m = self.cfg, self.m
        batch = min(cfg.batch_size, m)
        steps = max(1, round(cfg.sgd_epochs * m / batch)) if cfg.sgd_steps is None else cfg.sgd_steps
        epoch = max(1, round(m / batch))
        power = float((self.X.abs() ** 2).mean())  # mean power per coefficient of the images
        clean_var = 0.0  # estimated residual variance of the clean images at the last step
        previous = self.rotations.clone()
        stop_at = None if cfg.deadline is None else time.time() + 0.75 * (cfg.deadline - time.time())
        for step in range(steps):
            radius = cfg.radius_start_px + (self.radius_sgd_end - cfg.radius_start_px) * step / max(steps - 1, 1)
            added = max(0.0, cfg.noise_floor * power - clean_var)
            prune = step >= math.floor(cfg.prune_from * steps + 1e-9)
            weights, noise_var = self.sgd_step(batch, radius, added, m / batch, prune=prune)
            clean_var = max(0.0, noise_var - added)
            if (step + 1) % epoch == 0 or step == steps - 1:
                self.record("sgd", radius, noise_var, previous, weights, step=step + 1, added_noise_var=added)
                previous = self.rotations.clone()
            if stop_at is not None and time.time() > stop_at:
                self.log(f"warm start: stochastic EM stopped after {step + 1} of {steps} steps (time limit)")
                break

    def sgd_step(self, batch: int, radius: float, added: float, scale: float, prune: bool = False) -> tuple[torch.Tensor, float]:
        """One step on a random batch: E-step with noise of variance ``added`` per coefficient, then
        the sums move ``sgd_rate`` towards the batch's (with ``prune``, its best-fitting ``fit_fraction``'s)
        back-projection × ``scale``. Returns the batch's top-k weights and the E-step's noise variance."""
        rate = self.cfg.sgd_rate
        idx = torch.randperm(self.m, generator=self.gen)[:batch]
        noise = torch.complex(torch.randn(batch, self.X.shape[1], generator=self.gen),
                              torch.randn(batch, self.X.shape[1], generator=self.gen))
        rot, origin, weights, noise_var = self.global_search(self.X[idx] + noise * math.sqrt(added / 2), self.C[idx],
                                                             radius, self.rotation_grid_for(radius))
        self.rotations[idx], self.origins[idx] = rot[:, 0], origin[:, 0]
        kept = self.best_fitting(radius, idx) if prune else torch.ones(batch, dtype=torch.bool)
        nb, db = self.backproject(self.X[idx[kept]], self.C[idx[kept]], rot[kept], origin[kept], weights[kept])
        scale = scale * batch / int(kept.sum())
        self.numerator = (1 - rate) * self.numerator + rate * scale * nb
        self.denominator = (1 - rate) * self.denominator + rate * scale * db
        self.spectrum = self.reconstruct()
        return weights, noise_var

    def global_search(self, x: torch.Tensor, c: torch.Tensor, radius: float, rotations: torch.Tensor,
                      chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """Exhaustive E-step of images x, CTFs c (n, K) over ``rotations`` × the shift grid within
        ``radius``: top-k (rotations (n, k, 3, 3), origins (n, k, 2), weights (n, k)), noise var."""
        cfg = self.cfg
        keep = self.radii <= radius
        x, c, freqs = x[:, keep], c[:, keep], self.freqs[keep]
        n, n_shifts, k = x.shape[0], len(self.shifts), min(cfg.top_k, len(rotations))
        slices = project(SpectrumVolume(self.spectrum), rotations, freqs)  # (R, K)
        rhs = slice_factors(slices)  # (R, 3K)
        phases = origin_phase(freqs, self.shifts)  # (T, K)
        cand_err, cand_rot = torch.empty(n, n_shifts, k), torch.empty(n, n_shifts, k, dtype=torch.long)
        for first in range(0, n, chunk):
            xs, cs = x[first : first + chunk], c[first : first + chunk]
            err = factored_residuals(image_factors(xs, cs, phases), rhs)  # (m, T, R), less |x|²
            if cfg.free_amplitude:
                err = rescaled_residuals(err, model_power(cs, slices))
            e, i = torch.topk(err, k, dim=2, largest=False)  # best rotations for each shift
            cand_err[first : first + len(e)] = e + (xs.abs() ** 2).sum(1)[:, None, None]
            cand_rot[first : first + len(e)] = i
        noise_var = cand_err.amin((1, 2)).mean().clamp_min(1e-12) / keep.sum()  # per coefficient
        score = cand_err / noise_var + self.shift_penalty[None, :, None]
        j, weights = _soft_assign(score.reshape(n, -1), cfg.top_k)
        rot = rotations[cand_rot.reshape(n, -1).gather(1, j)]
        return rot, self.shifts[j // k], weights, float(noise_var)

    # ---- between the stages: the point group's axes -------------------------------------------
    def align_to_group(self) -> None:
        """Under a point group (module docstring): find its frame F in the C1 map, turn every pose
        A to A·F (RELION's orientation) and rebuild the sums there, symmetrised from now on."""
        if group_order(self.cfg.symmetry) == 1:
            return
        symbol = canonical_symbol(self.cfg.symmetry)
        fit = find_symmetry_frame(spectrum_to_map(self.spectrum, self.box), symbol, precise=False)
        frame, self.axes_score = torch.from_numpy(fit.frame).float(), float(fit.score)
        self.rotations = self.rotations @ frame
        self.operators, self.grids = torch.from_numpy(point_group(symbol)).float(), {}
        self.numerator, self.denominator = backproject(self.X, self.rotations, self.freqs, self.box, self.C,
                                                       self.origins, oversample=OVERSAMPLE)
        self.spectrum = self.reconstruct()
        self.log(f"warm start: {symbol} axes found in the C1 map (score {fit.score:.3f}); refining under {symbol}")

    # ---- stage 3: refinement on the whole subset ----------------------------------------------
    def refine(self) -> None:
        """``iterations`` passes over the clean subset: global searches first, then local ones
        with shrinking steps; each pass rebuilds the sums from all images."""
        cfg, box = self.cfg, self.box
        n_march = max(1, (cfg.iterations + 1) // 2)
        for it in range(cfg.iterations):
            if it >= cfg.global_iterations and cfg.deadline is not None and time.time() > cfg.deadline:
                self.log(f"warm start: refinement stopped after {it} of {cfg.iterations} passes (time limit)")
                break
            radius = self.radius_sgd_end + (box / 2 - self.radius_sgd_end) * min(it + 1, n_march) / n_march
            previous = self.rotations.clone()
            if it < cfg.global_iterations:
                rot, origin, weights, noise_var = self.global_search(self.X, self.C, radius,
                                                                     self.rotation_grid_for(radius))
            else:
                n_local = max(cfg.iterations - cfg.global_iterations - 1, 1)
                frac = (it - cfg.global_iterations) / n_local
                step_deg = cfg.local_step_deg[0] * (cfg.local_step_deg[1] / cfg.local_step_deg[0]) ** frac
                rot, origin, weights, noise_var = self.local_search(radius, step_deg)
            self.rotations, self.origins = rot[:, 0].clone(), origin[:, 0].clone()
            kept = self.best_fitting(radius) if it > 0 else torch.ones(self.m, dtype=torch.bool)
            self.numerator, self.denominator = self.backproject(self.X[kept], self.C[kept], rot[kept], origin[kept], weights[kept])
            self.spectrum = self.reconstruct()
            self.record("refine", radius, noise_var, previous, weights, kept=float(kept.float().mean()))

    def best_fitting(self, radius: float, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Bool per image of ``rows`` (default all): the ``fit_fraction`` best correlated with their projection."""
        rows = torch.arange(self.m) if rows is None else rows
        corr = self.fit_correlations(rows, self.rotations[rows], self.origins[rows], radius)
        return corr >= torch.sort(corr, descending=True).values[max(1, round(self.cfg.fit_fraction * len(rows))) - 1]

    def fit_correlations(self, rows: torch.Tensor, rotations: torch.Tensor, origins: torch.Tensor, radius: float,
                         chunk: int = 256) -> torch.Tensor:
        """Correlation (``train/scores.py``) of images ``rows`` with the map's projection at poses (n, 3, 3), (n, 2) px."""
        keep = self.radii <= radius
        freqs, volume = self.freqs[keep], SpectrumVolume(self.spectrum)
        corr = torch.empty(len(rows))
        for first in range(0, len(rows), chunk):
            part, r = slice(first, first + chunk), rows[first : first + chunk]
            model = modulate(project(volume, rotations[part], freqs), freqs, self.C[r][:, keep], origins[part])
            corr[part] = correlation(self.X[r][:, keep], model)
        return corr

    def local_search(self, radius: float, step_deg: float,
                     chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """E-step of all images over their current pose perturbed (rotation R·Δ, origin ± step)."""
        cfg = self.cfg
        keep = self.radii <= radius
        freqs, n_coef = self.freqs[keep], keep.sum()
        pert = local_perturbations(step_deg)  # (J, 3, 3)
        g = torch.arange(-1, 2, dtype=torch.float32) * cfg.local_shift_px
        dshift = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)  # (S, 2)
        volume = SpectrumVolume(self.spectrum)
        parts = []
        for first in range(0, self.m, chunk):
            part = slice(first, min(first + chunk, self.m))
            x, c = self.X[part][:, keep], self.C[part][:, keep]
            n = x.shape[0]
            cand_R = self.rotations[part][:, None] @ pert[None]  # (n, J, 3, 3)
            cand_t = self.origins[part][:, None, :] + dshift[None]  # (n, S, 2)
            norm = cand_t.norm(dim=2, keepdim=True)
            cand_t = torch.where(norm > cfg.max_shift_px, cand_t * cfg.max_shift_px / norm.clamp_min(1e-12), cand_t)
            proj = project(volume, cand_R.reshape(-1, 3, 3), freqs).reshape(n, len(pert), -1)
            phases = origin_phase(freqs, cand_t.reshape(-1, 2)).reshape(n, len(dshift), -1)
            err = factored_residuals(image_factors(x, c, phases), slice_factors(proj))  # (n, S, J), less |x|²
            if cfg.free_amplitude:
                err = rescaled_residuals(err, model_power(c, proj))
            err = err + (x.abs() ** 2).sum(1)[:, None, None]
            parts.append((err.reshape(n, -1), cand_R, cand_t))
        noise_var = torch.cat([p[0].amin(1) for p in parts]).mean().clamp_min(1e-12) / n_coef
        rots, origins, weights = [], [], []
        for err, cand_R, cand_t in parts:
            j, w = _soft_assign(err / noise_var, cfg.top_k)
            s_idx, r_idx = j // len(pert), j % len(pert)
            rots.append(cand_R.gather(1, r_idx[..., None, None].expand(-1, -1, 3, 3)))
            origins.append(cand_t.gather(1, s_idx[..., None].expand(-1, -1, 2)))
            weights.append(w)
        return torch.cat(rots), torch.cat(origins), torch.cat(weights), float(noise_var)

    # ---- progress -----------------------------------------------------------------------------
    def record(self, stage: str, radius: float, noise_var: float, previous: torch.Tensor, weights: torch.Tensor,
               **extra) -> None:
        """One history line (the share of poses that moved > 5° since ``previous``), logged."""
        changed = float((roma.rotmat_geodesic_distance(previous, self.rotations) > math.radians(5)).float().mean())
        self.history.append({"stage": stage, "radius": radius, "noise_var": noise_var, "changed": changed,
                             "top1_weight": float(weights[:, 0].mean()), **extra})
        self.log(f"warm start {stage} {len(self.history)}: radius {radius:.1f} px, poses changed "
                 f"{100 * changed:.0f}%, mean top weight {weights[:, 0].mean():.2f}")
        if self.callback is not None:
            self.callback(self.rotations.clone(), self.origins.clone())
