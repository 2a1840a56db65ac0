"""Global re-search of the particles that stay poorly fit after local refinement.

Local refinement (``train/refine.py``, ``train/hypotheses.py``) cannot move a pose the encoder
left in the wrong viewing direction: most images far off in a converged run are tilted by some
angle about an in-plane axis, beyond any local step. So after a round of refinement against a
direct reconstruction, the worst-fitting ``fraction`` of the images (below) get a coarse exhaustive
search against that map, as the warm start does (``warmstart.rotation_grid`` × a few shifts
around the current origin, scored all at once by the factored residual of
``physics.image_model``),
compared only up to ``COARSE_RADIUS`` (a small box: the low frequencies carry most of the
signal at low SNR, and the grid need only be as fine as they resolve); the ``CANDIDATES`` best
grid poses are refined locally (``refine.refine_poses``) and the one with the smallest residual
replaces the current pose if it fits better.

The worst fitting are those whose image holds least of their own projection: the least-squares
scale s = Re⟨m, x⟩ / ‖m‖² of the model m at the current pose in the (whitened) image x, ≈ 1 at
the right pose, lower at a wrong one. A residual ‖x − m‖²/‖x‖² does not find them at low SNR,
where the image's power is the noise's, nor does the correlation Re⟨m, x⟩/(‖m‖‖x‖), which also
ranks the views by their projection's power. Against the final maps of 10k-particle runs
(``benchmarks/outlier_scores.py``), as the area under the ROC curve for the poses > 20° off:
8ZPM at SNR 0.1 0.76 (residual 0.52), 4AKE 0.80 (0.66); at SNR 0.05 0.66 (0.51) and 0.76
(0.63). The worst 10 % by the residual held 7–9 % of the far-off poses, by the scale 17–42 %.

Cost per re-searched image: ``N_DIRECTIONS``·``N_PSI`` × 5 shifts scores at ~160 coefficients
(one small matrix product; the slices are made once per batch) and ``CANDIDATES`` local
refinements (145 slices each), about 1.5 times ``refine_poses`` per image at L = 64; plus one
slice per image of the whole set for the scale that ranks them.
"""

from __future__ import annotations

import numpy as np
import torch

from cryoai.data.training_data import TrainingData
from cryoai.physics.image_model import factored_residuals, image_factors, render_spectra, slice_factors
from cryoai.physics.shifts import origin_phase
from cryoai.physics.slicing import project
from cryoai.train import distributed as dist
from cryoai.train.batches import chunked_batches
from cryoai.train.decoder import loss_frequencies
from cryoai.train.hypotheses import pose_residuals
from cryoai.train.predict import refinement_radius
from cryoai.train.refine import refine_poses
from cryoai.train.warmstart import rotation_grid, shift_grid

COARSE_RADIUS = 10.0  # Fourier px of an L = 64 box the grid search compares up to (scaled to other boxes)
N_DIRECTIONS, N_PSI = 800, 40  # the rotation grid: ~7° between viewing directions, 9° in-plane
CANDIDATES = 3  # grid poses per image refined locally
FRACTION = 0.1  # of the images, the worst fitting, re-searched after each refinement round


@torch.no_grad()
def projection_scale(volume, rotations: torch.Tensor, origins_px: torch.Tensor, target: torch.Tensor,
                     ctf_values: torch.Tensor | None, freqs: torch.Tensor) -> torch.Tensor:
    """Re⟨m, x⟩ / ‖m‖² per image (B,): the least-squares scale of the model m at the pose in
    the target x (module docstring: the lowest fit worst)."""
    model = render_spectra(volume, rotations, freqs, ctf_values, origins_px)
    return (target.conj() * model).real.sum(-1) / model.abs().pow(2).sum(-1).clamp_min(1e-30)


@torch.no_grad()
def grid_search(volume, origins_px: torch.Tensor, target: torch.Tensor, ctf_values: torch.Tensor | None,
                freqs: torch.Tensor, grid: torch.Tensor, candidates: int = CANDIDATES,
                chunk: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``candidates`` best grid rotations (B, k, 3, 3) and their origins (B, k, 2) px of each
    image (target (B, M) at freqs (M, 2) cycles/px), over ``grid`` (R, 3, 3) × 5 origins within
    1 px of its current one."""
    rhs = slice_factors(project(volume, grid, freqs))  # (R, 3M), shared by every image
    offsets = shift_grid(1.0, 1.0).to(target.device)  # (5, 2): the origin and ±1 px in x and y
    c = torch.ones_like(target.real) if ctf_values is None else ctf_values
    rots, origins = [], []
    for first in range(0, len(target), chunk):
        part = slice(first, first + chunk)
        shifts = origins_px[part][:, None] + offsets[None]  # (n, 5, 2)
        phases = origin_phase(freqs, shifts.reshape(-1, 2)).reshape(*shifts.shape[:2], -1)
        # |x − c·S·P|² less |x|² (the same for every pose of an image), at the best origin per rotation: (n, R)
        err, t_best = factored_residuals(image_factors(target[part], c[part], phases), rhs).min(1)
        r_best = torch.topk(err, min(candidates, len(grid)), dim=1, largest=False).indices  # (n, k)
        rots.append(grid[r_best])
        origins.append(shifts.gather(1, t_best.gather(1, r_best)[..., None].expand(-1, -1, 2)))
    return torch.cat(rots), torch.cat(origins)


@torch.no_grad()
def research(volume, rotations: torch.Tensor, origins_px: torch.Tensor, target: torch.Tensor,
             ctf_values: torch.Tensor | None, freqs: torch.Tensor, coarse: torch.Tensor,
             grid: torch.Tensor, candidates: int = CANDIDATES) -> tuple[torch.Tensor, torch.Tensor]:
    """Poses (rotations (B, 3, 3), origins (B, 2) px) after a global re-search of each image:
    the ``grid_search`` on the frequencies ``coarse`` (a (M,) mask of freqs), each candidate
    refined on all of freqs, and the best of them kept where it fits better than the given pose."""
    c_coarse = None if ctf_values is None else ctf_values[:, coarse]
    cand_rot, cand_origin = grid_search(volume, origins_px, target[:, coarse], c_coarse, freqs[coarse], grid, candidates)
    b, k = cand_rot.shape[:2]
    repeat = lambda t: None if t is None else t.repeat_interleave(k, 0)  # noqa: E731
    rot, origin = refine_poses(volume, cand_rot.reshape(-1, 3, 3), cand_origin.reshape(-1, 2), repeat(target),
                               repeat(ctf_values), freqs)
    err = pose_residuals(volume, rot, origin, repeat(target), repeat(ctf_values), freqs).reshape(b, k)
    best = err.min(1)
    pick = torch.arange(b, device=target.device) * k + best.indices
    better = best.values < pose_residuals(volume, rotations, origins_px, target, ctf_values, freqs)
    return (torch.where(better[:, None, None], rot[pick], rotations),
            torch.where(better[:, None], origin[pick], origins_px))


@torch.no_grad()
def research_poses(volume, data: TrainingData, rows: np.ndarray, poses: tuple[np.ndarray, np.ndarray],
                   count: int, device: str = "cpu", workers: int = 0, batch_size: int = 256,
                   exclude: np.ndarray | None = None,
                   signal_to: float | None = None) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """``poses`` of ``rows`` (RELION matrices (N, 3, 3), origins (N, 2) Å) with the ``count``
    worst-fitting of them re-searched globally against ``volume`` (module docstring), which holds
    a direct reconstruction (known to Nyquist), and the positions into ``rows`` re-searched
    (sorted). Positions ``exclude`` are not (e.g. those already re-searched against this map:
    the same search would find the same poses). ``signal_to``: the radius (Fourier px) the
    images carry signal to (``train/signal_radius.py``), beyond which no fit compares; None:
    ``predict.refinement_radius``'s. Under torchrun each rank does its share."""
    box, apix = data.train_box, data.apix
    rot_all, origin_all = np.array(poses[0], dtype=np.float64), np.array(poses[1], dtype=np.float64)
    if count <= 0:
        return (rot_all, origin_all), np.zeros(0, dtype=np.int64)
    idx, freqs = loss_frequencies(box, refinement_radius(box, box / 2 if signal_to is None else signal_to), device)
    coarse = freqs.norm(dim=1) * box <= COARSE_RADIUS * box / 64
    grid = rotation_grid(N_DIRECTIONS, N_PSI).to(device)

    def passes(positions: np.ndarray):
        """(start, rotations, origins px, target, CTF) for batches of ``positions`` into rows."""
        for start, b in chunked_batches(data, rows[positions], batch_size, workers):
            sl = positions[start : start + batch_size]
            b = b.to(device)
            yield (sl, torch.from_numpy(rot_all[sl]).to(device, torch.float32),
                   torch.from_numpy(origin_all[sl] / apix).to(device, torch.float32),
                   b.spectra.reshape(len(sl), -1)[:, idx], b.model_filter(freqs, apix))  # CTF × whitening

    everyone = np.arange(len(rows))[dist.shard_range(len(rows))]
    scores = np.concatenate([projection_scale(volume, r, o, x, c, freqs).cpu().numpy() for _, r, o, x, c in passes(everyone)])
    (scores,) = dist.gather_rows(scores)
    available = len(rows)
    if exclude is not None:
        scores[exclude], available = np.inf, len(rows) - len(exclude)
    worst = np.sort(np.argsort(scores, kind="stable")[: min(count, available)])
    mine = worst[dist.shard_range(len(worst))]
    new_rot, new_origin = np.empty((len(mine), 3, 3)), np.empty((len(mine), 2))
    for i, (sl, r, o, x, c) in enumerate(passes(mine)):
        r, o = research(volume, r, o, x, c, freqs, coarse, grid)
        new_rot[i * batch_size : i * batch_size + len(sl)] = r.cpu().numpy()
        new_origin[i * batch_size : i * batch_size + len(sl)] = o.cpu().numpy() * apix
    new_rot, new_origin = dist.gather_rows(new_rot, new_origin)
    rot_all[worst], origin_all[worst] = new_rot, new_origin
    return (rot_all, origin_all), worst
