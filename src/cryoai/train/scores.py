"""The per-particle figure of merit, and which particles it keeps for the map.

A particle image x is scored by how well its best projection m (the image model at its final
pose: CTF · shift · central slice of the map) explains it, compared with the empty model (no
particle, x pure noise). With the scale s of the projection free (contrast varies) and the noise
level of each image free too, the gain in log likelihood of the Gaussian model is

    ΔLL = K · log(‖x‖² / ‖x − s·m‖²) = −K · log(1 − c²),   c = Re⟨m, x⟩ / (‖m‖ ‖x‖),

over the K complex coefficients compared, of the whitened spectra and model (``TrainingData``
whitens both by the noise spectrum, so the noise is white here). A raw residual ‖x − m‖² does not separate an empty pick (little
power, small residual) from a particle; c does: an empty pick correlates only by chance, a blob
of ice has power the projection does not explain, a fragment explains a part of it. ΔLL is
written as ``rlnLogLikeliContribution`` (signed with c: a negative fit is worse than none);
``keep_mask`` chooses the particles for the map from c: a fraction, or a threshold between the
two components of a 1-D Gaussian mixture when the scores are bimodal (``auto``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from cryoai.data.training_data import TrainingData
from cryoai.physics.image_model import render_spectra
from cryoai.train import distributed as dist
from cryoai.train.batches import chunked_batches
from cryoai.train.decoder import loss_frequencies

AUTO_SEPARATION = 2.0  # Ashman's D two components need to count as bimodal
AUTO_MAX_REJECT = 0.6  # the lower component may hold at most this share of the particles
AUTO_MIN_GAP = 0.3  # and its mean correlation must be this far below the upper's, relative to it


@dataclass
class Scores:
    """Per particle (rows in order): the correlation c with its best projection and ΔLL (nats)."""

    correlation: np.ndarray
    log_likelihood_gain: np.ndarray


@torch.no_grad()
def fit_scores(volume, data: TrainingData, rows: np.ndarray, poses: tuple[np.ndarray, np.ndarray],
               radius: float | None = None, batch_size: int = 256,
               device: str = "cpu", workers: int = 0) -> Scores:
    """Scores of ``rows`` at their ``poses`` (RELION matrices (N, 3, 3), origins (N, 2) in Å)
    against ``volume``, over the frequencies within ``radius`` Fourier px of the training box
    (default box/4, what refinement compares). Under torchrun each rank scores its share of the
    rows and every rank gets all the scores back (in order)."""
    box = data.train_box
    idx, freqs = loss_frequencies(box, box / 4 if radius is None else radius, device)
    share = dist.shard_range(len(rows))
    rows, rotations, origins_A = np.asarray(rows)[share], poses[0][share], poses[1][share]
    corr = np.empty(len(rows))
    for start, batch in chunked_batches(data, rows, batch_size, workers):
        sl = slice(start, start + len(batch.indices))
        batch = batch.to(device)
        x = batch.spectra.reshape(len(batch.indices), -1)[:, idx]
        c = batch.model_filter(freqs, data.apix)  # CTF × whitening, as the spectra
        rot = torch.from_numpy(rotations[sl]).to(device, torch.float32)
        origin = torch.from_numpy(origins_A[sl] / data.apix).to(device, torch.float32)
        m = render_spectra(volume, rot, freqs, c, origin)
        corr[sl] = correlation(x, m).cpu().numpy()
    (corr,) = dist.gather_rows(corr)
    return Scores(corr, log_likelihood_gain(corr, len(idx)))


def correlation(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Re⟨m, x⟩ / (‖m‖ ‖x‖) of spectra x, m (B, M): (B,), 0 where either is 0."""
    cross = (x * m.conj()).real.sum(1)
    norms = ((x.abs() ** 2).sum(1) * (m.abs() ** 2).sum(1)).sqrt()
    return torch.where(norms > 0, cross / norms.clamp_min(1e-30), torch.zeros_like(cross))


def log_likelihood_gain(corr: np.ndarray, n_coefficients: int) -> np.ndarray:
    """ΔLL = −K·log(1 − c²), signed with c (module docstring), for K complex coefficients."""
    c2 = np.clip(np.asarray(corr, dtype=np.float64) ** 2, 0.0, 1.0 - 1e-12)
    return np.sign(corr) * -n_coefficients * np.log1p(-c2)


# ---- which particles the map is made from ----------------------------------------------------

def judge_particles(volume, data: TrainingData, poses: tuple[np.ndarray, np.ndarray], keep: str | float,
                    device: str = "cpu", workers: int = 0, log: Callable[[str], None] = lambda line: None
                    ) -> dict[str, np.ndarray]:
    """Every particle's fit score at its pose and whether it is kept for the map (``keep_mask``),
    as the particles.star columns: rlnLogLikeliContribution (ΔLL, nats) and rlnSelected (1 kept,
    0 not: RELION's selection flag, ``relion_star_handler --select rlnSelected --minval 1``).
    Under torchrun the mask is chosen from every rank's gathered scores: the same on all ranks."""
    scores = fit_scores(volume, data, np.arange(len(data.particles)), poses, device=device,
                        workers=workers)
    log(f"fit scores: correlation with the best projection median {np.median(scores.correlation):.3f} "
        f"(5th-95th percentile {np.percentile(scores.correlation, 5):.3f}-{np.percentile(scores.correlation, 95):.3f})")
    kept = keep_mask(scores.correlation, keep, log)
    return {"rlnLogLikeliContribution": scores.log_likelihood_gain, "rlnSelected": kept.astype(np.int64)}


def parse_keep(value: str) -> str | float:
    """``--keep``: "all", "auto" or a fraction in (0, 1]; ValueError otherwise."""
    if value in ("all", "auto"):
        return value
    fraction = float(value)
    if not 0 < fraction <= 1:
        raise ValueError(f"--keep {value}: give auto, all or a fraction in (0, 1]")
    return fraction


def keep_mask(corr: np.ndarray, keep: str | float, log: Callable[[str], None] = lambda line: None) -> np.ndarray:
    """Which particles (bool per row) the map is made from: all, the best ``keep`` fraction by
    correlation, or (``auto``) those above the threshold ``auto_threshold`` finds."""
    corr = np.asarray(corr, dtype=np.float64)
    n = len(corr)
    if keep == "all" or n == 0:
        return np.ones(n, dtype=bool)
    if keep == "auto":
        threshold, why = auto_threshold(corr)
        mask = np.ones(n, dtype=bool) if threshold is None else corr >= threshold
        log(f"keep auto: {why}; kept {int(mask.sum())} of {n} particles")
        return mask
    count = max(1, int(round(float(keep) * n)))
    mask = np.zeros(n, dtype=bool)
    mask[np.argsort(-corr, kind="stable")[:count]] = True
    log(f"keep {float(keep):g}: kept the best {count} of {n} particles (correlation ≥ {corr[mask].min():.3f})")
    return mask


def auto_threshold(corr: np.ndarray) -> tuple[float | None, str]:
    """A threshold between the two components of a 1-D two-Gaussian mixture fitted to the scores,
    where the lower one's posterior falls to ½; None (keep all) when the scores look unimodal:
    components closer than ``AUTO_SEPARATION`` (Ashman's D) or than ``AUTO_MIN_GAP`` of the upper
    mean (clean sets can split into two tight modes of nearly equal fit), or a lower one holding
    more than ``AUTO_MAX_REJECT`` of the particles. Returns (threshold, the reason in words)."""
    if len(corr) < 20:
        return None, f"only {len(corr)} particles, too few to judge: all kept"
    weights, means, sds = gaussian_mixture_2(corr)
    lo, hi = int(np.argmin(means)), int(np.argmax(means))
    separation = math.sqrt(2) * (means[hi] - means[lo]) / math.sqrt(sds[lo] ** 2 + sds[hi] ** 2)
    fit = (f"mixture of {weights[lo]:.0%} at {means[lo]:.3f} ± {sds[lo]:.3f} and {weights[hi]:.0%} at "
           f"{means[hi]:.3f} ± {sds[hi]:.3f} (separation D = {separation:.1f})")
    gap = (means[hi] - means[lo]) / max(abs(means[hi]), 1e-12)
    if separation < AUTO_SEPARATION or gap < AUTO_MIN_GAP or weights[lo] > AUTO_MAX_REJECT:
        return None, f"scores unimodal ({fit}): all kept"
    grid = np.linspace(means[lo], means[hi], 1001)
    dens = [w * np.exp(-0.5 * ((grid - mu) / sd) ** 2) / sd for w, mu, sd in zip(weights, means, sds)]
    above = np.flatnonzero(dens[hi] >= dens[lo])
    threshold = float(grid[above[0]]) if len(above) else float(grid[-1])
    return threshold, f"{fit}, threshold {threshold:.3f}"


def gaussian_mixture_2(values: np.ndarray, iterations: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights, means, standard deviations) of a two-component Gaussian mixture fitted to 1-D
    ``values`` by EM, started from the lower and upper quartiles."""
    v = np.asarray(values, dtype=np.float64)
    floor = 1e-3 * (v.std() + 1e-12)
    means = np.percentile(v, [25, 75]).astype(np.float64)
    sds = np.full(2, v.std() / 2 + floor)
    weights = np.full(2, 0.5)
    for _ in range(iterations):
        log_p = np.log(weights) - np.log(sds) - 0.5 * ((v[:, None] - means) / sds) ** 2
        resp = np.exp(log_p - log_p.max(1, keepdims=True))
        resp /= resp.sum(1, keepdims=True)
        total = resp.sum(0) + 1e-12
        weights = total / len(v)
        means = (resp * v[:, None]).sum(0) / total
        sds = np.sqrt((resp * (v[:, None] - means) ** 2).sum(0) / total) + floor
    return weights, means, sds
