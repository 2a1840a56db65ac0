"""After training: the final poses and map (the last stage of ``cryoai train``).

On a fixed-size subset (``final_subset`` particles, all of them in a smaller set, the
warm-start subset among them): for the warm-start subset the poses training refined for it,
for the others poses from the encoder with local refinement, or, where the encoder has not
learned the subset's poses, from a global search against the subset's map (``first_poses``),
then up to ``rounds`` of direct reconstruction and refinement against it, comparing only out to
the radius the images carry signal to (measured from the first poses: ``train/signal_radius.py``),
until the poses stop moving (CONVERGED_MOVED), and under a time limit a re-search of more of the
worst-fitting poses in the time no round fits in. Then every particle gets its pose from the
encoder, refined against that map (the subset keeps its own), and the final map is reconstructed from all of them (or
from those the caller keeps: ``map_rows``, e.g. by the fit scores of ``train/scores.py``). Only
the last two passes grow with the data set. Under a time limit the rounds and the subset are
cut to what fits, from the measured cost of each pass (``Deadline``, ``train/time_limit.py``).
Functions of the models and data, so that a benchmark can time any part
(``benchmarks/million.py``); under torchrun every rank calls them and each does its share of
every pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm import tqdm

from cryoai.eval.diagnostics import MAX_POSE_CHANGE_DEG
from cryoai.geometry.symmetry import distance_modulo_group_deg, group_order, point_group
from cryoai.physics.backprojection import backproject, reconstruct_in_box, symmetrise_sums
from cryoai.train import distributed as dist
from cryoai.data.training_data import TrainingData
from cryoai.train.batches import chunked_batches
from cryoai.train.decoder import loss_frequencies
from cryoai.train.hypotheses import TURNS
from cryoai.train.predict import predict_poses_sharded
from cryoai.train.research import FRACTION, research_poses
from cryoai.train.scores import fit_scores
from cryoai.train.signal_radius import MAX_FRACTION, held_out, ring_snr, signal_radius
from cryoai.train.time_limit import (FinishCosts, plan_finish, refined_poses_fit, research_that_fits, rounds_that_fit,
                                    searched_poses_fit)

Poses = tuple[np.ndarray, np.ndarray]  # RELION rotation matrices (N, 3, 3), origins (N, 2) in Å
Prior = tuple[np.ndarray, Poses]  # rows (sorted) and the poses training holds for them (the warm-start subset's)
# The rounds stop once fewer than CONVERGED_MOVED of the poses moved more than MOVED_DEG in one
# (modulo the point group). On 10k particles at SNR 0.1 every round gained, less as fewer moved
# (8ZPM: 10.5° → 7.1° → 5.9° → 5.4° → 5.1° → 4.9° median error, with 28, 13, 5, 2, 1 % moved;
# 4AKE 5.3° → 3.9°).
MOVED_DEG = 5.0
CONVERGED_MOVED = 0.01
# Under a time limit, once no more rounds fit, the time left re-searches more of the worst-fitting
# poses (``research_that_fits``), if at least this share of the subset fits.
MIN_RESEARCH = 0.02
# Under a time limit, poses for many particles are predicted in chunks of this many (or a 20th of
# them, if more), each refined only while the refined rest still fits (``predict_in_time``)
PREDICT_CHUNK = 256
# The finish's first poses of the particles outside the warm-start subset come from the encoder
# only if its poses of the subset lie within this median angle of those training refined there
# (the final check's pose-stability bound); else from a global search against the subset's map.
# At SNR 0.1 (10k, 20-min runs) the encoder stayed 51° (8ZPM) and 60° (4AKE) off, and the first
# round from its refined poses moved 53-54 % of them by more than 5°.
TRUST_ENCODER_DEG = MAX_POSE_CHANGE_DEG
AGREEMENT_ROWS = 512  # of the subset, compared


@dataclass(frozen=True)
class PoseSettings:
    """How the finish predicts poses."""

    radius: float  # the loss radius the training reached (Fourier px of the training box)
    symmetric: bool  # the encoder also sees π-rotated copies (the symmetric loss)
    device: str = "cpu"
    workers: int = 0  # processes reading the next batches (train/batches.py)
    progress: bool = False
    turns: int = TURNS  # in-plane starts per image of the local refinement (train/hypotheses.py; 1: none)
    research_fraction: float = FRACTION  # of the subset, re-searched globally each round (train/research.py)
    symmetry: str = "C1"  # the point group the maps are symmetrised over, in RELION's orientation (train --symmetry)
    signal_radius: float | None = None  # refinement against a map compares up to this (Fourier px; None: box/4)

    def operators(self) -> torch.Tensor | None:
        """``symmetry``'s rotations (``group_operators``); None for C1."""
        return group_operators(self.symmetry)


def group_operators(symbol: str) -> torch.Tensor | None:
    """Point group ``symbol``'s (K, 3, 3) rotations in RELION's orientation (float32); None for C1."""
    return None if group_order(symbol) == 1 else torch.from_numpy(point_group(symbol)).float()


def reconstruct(data: TrainingData, rows: np.ndarray, rotations: torch.Tensor, origins_px: torch.Tensor,
                oversample: int, workers: int = 0, operators: torch.Tensor | None = None) -> torch.Tensor:
    """A direct Fourier reconstruction (oversampled grid) of ``rows`` at the given poses:
    one streaming pass of back-projection, Wiener-regularised, confined to the box. With a noise
    spectrum (whitened batches) it is the maximum-likelihood Σ c·X/p / Σ c²/p.
    Under torchrun each rank back-projects its share of the rows and the sums are added up.
    ``workers`` processes read the next batches meanwhile (``batches``). With point-group
    ``operators`` (K, 3, 3) the sums are symmetrised over them (``symmetrise_sums``)."""
    box = data.train_box
    idx, freqs = loss_frequencies(box, box // 2)
    share = dist.shard_range(len(rows))
    rows, rotations, origins_px = rows[share], rotations[share], origins_px[share]
    size = box * oversample
    into = (torch.zeros((size,) * 3, dtype=torch.complex64), torch.zeros((size,) * 3))
    for start, b in chunked_batches(data, rows, 256, workers):
        c = b.model_filter(freqs, data.apix)  # CTF × whitening: Σ c·X/p / Σ c²/p
        into = backproject(b.spectra.reshape(len(b.indices), -1)[:, idx], rotations[start : start + 256], freqs,
                           box, c, origins_px[start : start + 256], oversample=oversample, into=into)
    dist.sum_tensors(*into)
    if operators is not None:
        into = symmetrise_sums(*into, operators)
    return reconstruct_in_box(*into, box, 0.05)


def load_reconstruction(volume, data: TrainingData, rows: np.ndarray, poses: Poses, how: PoseSettings) -> None:
    """Set ``volume`` to the direct reconstruction of ``rows`` at ``poses``, symmetrised over
    ``how.symmetry``."""
    rotations, origins_A = poses
    spectrum = reconstruct(data, rows, torch.from_numpy(rotations).float(), torch.from_numpy(origins_A / data.apix).float(),
                           volume.oversample, how.workers, how.operators())
    volume.load_spectrum(spectrum.to(how.device))


def predict(encoder, volume, data: TrainingData, rows: np.ndarray | None, how: PoseSettings,
            start: Poses | None = None, refine: bool = True) -> Poses:
    """Poses of ``rows`` (None: all): the encoder's, or ``start``, refined against ``volume``.
    Given ``start``, the volume is a reconstruction, known to Nyquist: refinement compares up to
    ``predict.refinement_radius`` of that, and never beyond ``how.signal_radius``, from the start
    alone (``how.turns`` in-plane starts are for the encoder's poses: from poses refined once, a
    round on 4AKE 10k SNR 0.1 reached the same 4.59° median with one start as with four, in 40 s
    instead of 126 s)."""
    known_to = how.radius if start is None else data.train_box / 2
    return predict_poses_sharded(encoder, volume, data, known_to, how.symmetric, device=how.device,
                                 progress=how.progress, indices=rows, refine=refine, start_poses=start,
                                 workers=how.workers, turns=how.turns if start is None else 1,
                                 signal_to=how.signal_radius)


def first_poses(encoder, volume, data: TrainingData, rows: np.ndarray | None, how: PoseSettings,
                prior: Prior | None = None, log: Callable[[str], None] = lambda line: None,
                clock: Deadline | None = None, to_predict_after: int = 0) -> Poses:
    """The finish's first poses of ``rows`` (None: all): for the rows ``prior`` holds, its poses
    (refined during training); for the others the encoder's, refined (``predict_in_time``, under
    ``clock`` with ``to_predict_after`` more particles to predict after these), or, when the
    encoder has not learned the prior's poses (``encoder_agreement_deg`` above TRUST_ENCODER_DEG),
    a global search against the prior's map (``search_in_time``). At SNR 0.1 the prior fitted
    better than the encoder's refined pose for 94 % of the warm-start subset (8ZPM, 10k), and
    its 4000 encoder poses cost 1.2 minutes."""
    rows = np.arange(len(data.particles)) if rows is None else rows
    held = np.zeros(len(rows), bool) if prior is None else np.isin(rows, prior[0])
    rot, origin = np.empty((len(rows), 3, 3)), np.empty((len(rows), 2))
    search = False
    if not held.all():
        if prior is not None:
            agreement = float(dist.from_main(encoder_agreement_deg(encoder, volume, data, prior, how)))
            search = agreement > TRUST_ENCODER_DEG
            log(f"finish: the encoder's poses of the warm-start subset lie {agreement:.1f}° (median) from those "
                "training refined" + (f", over {TRUST_ENCODER_DEG:g}°: the other particles are searched globally "
                                      "against the subset's map instead" if search else ""))
        if search:
            rot[~held], origin[~held] = search_in_time(encoder, volume, data, rows[~held], how, prior, clock,
                                                       to_predict_after, log)
        else:
            rot[~held], origin[~held] = predict_in_time(encoder, volume, data, rows[~held], how, clock,
                                                        to_predict_after, log)
    if held.any():
        at_prior = np.searchsorted(prior[0], rows[held])  # prior rows are sorted
        rot[held], origin[held] = prior[1][0][at_prior], prior[1][1][at_prior]
        source = "a global search's" if search else "the encoder's"
        log(f"finish: {int(held.sum())} poses from training (the warm-start subset's), {source} for "
            f"{int((~held).sum())}")
    return rot, origin


def encoder_agreement_deg(encoder, volume, data: TrainingData, prior: Prior, how: PoseSettings,
                          rows: int = AGREEMENT_ROWS) -> float:
    """The median angle (degrees, modulo ``how.symmetry``) between the encoder's poses (unrefined)
    of up to ``rows`` of the rows ``prior`` holds, evenly spread, and the prior's poses of them."""
    at = np.unique(np.linspace(0, len(prior[0]) - 1, min(rows, len(prior[0]))).round().astype(np.int64))
    rot, _ = predict(encoder, volume, data, prior[0][at], replace(how, progress=False), refine=False)
    return float(np.median(distance_modulo_group_deg(rot, prior[1][0][at], how.symmetry)))


def search_in_time(encoder, volume, data: TrainingData, rows: np.ndarray, how: PoseSettings, prior: Prior,
                   clock: Deadline | None, to_predict_after: int = 0,
                   log: Callable[[str], None] = lambda line: None) -> Poses:
    """Poses of ``rows`` from a global search (``research_poses`` of every one) against the map
    ``volume`` is then set to, reconstructed from the ``prior`` rows at its poses; an encoder's
    pose is kept where it fits better. Under ``clock``, in chunks (as ``predict_in_time``), each
    timed (``clock.costs.research_s``) and run only while searched poses for the rest, then
    refined poses for ``to_predict_after`` more particles, the map and the passes after it, fit
    in the time left (``searched_poses_fit``); then ``predict_in_time`` for the rest."""
    load_reconstruction(volume, data, prior[0], prior[1], how)
    quiet = replace(how, progress=False)
    rot, origin = predict(encoder, volume, data, rows, quiet, refine=False)
    n, chunk = len(data.particles), max(PREDICT_CHUNK, len(rows) // 20)
    bar = tqdm(total=len(rows), desc="search", unit="img", disable=not (how.progress and dist.is_main()))
    for start in range(0, len(rows), chunk):
        left = len(rows) - start
        if (start and clock is not None and not
                dist.from_main(float(searched_poses_fit(clock.costs, left, to_predict_after, n, clock.left())))):
            log(f"finish: the last {left} of {len(rows)} particles are not searched (it does not fit in the "
                f"{clock.left() / 60:.1f} min left): the encoder's poses for them")
            rot[start:], origin[start:] = predict_in_time(encoder, volume, data, rows[start:], how, clock,
                                                          to_predict_after, log)
            bar.update(left)
            break
        part, t0 = slice(start, start + chunk), time.time()
        (rot[part], origin[part]), _ = research_poses(volume, data, rows[part], (rot[part], origin[part]),
                                                      len(rows[part]), how.device, how.workers,
                                                      signal_to=how.signal_radius)
        if clock is not None:
            clock.costs.research_s = (time.time() - t0) / len(rows[part])
        bar.update(len(rows[part]))
    bar.close()
    return rot, origin


def predict_in_time(encoder, volume, data: TrainingData, rows: np.ndarray, how: PoseSettings,
                    clock: Deadline | None, to_predict_after: int = 0,
                    log: Callable[[str], None] = lambda line: None) -> Poses:
    """``predict`` of ``rows``, refined. Under ``clock``, in chunks (PREDICT_CHUNK), each timed
    (``clock.costs.predict_s``) and refined only while refined poses for the rest, and for
    ``to_predict_after`` more particles, then the map from all and the passes after it, fit in
    the time left (``refined_poses_fit``); then the encoder's poses for the rest, unrefined. The
    first chunk is always refined: it measures the cost. A single cost probed beforehand is not
    enough: with another job beside it, a 20-min run measured 3× the cost, kept the encoder's
    poses for all 10k particles and ended 8 min early."""
    if clock is None:
        return predict(encoder, volume, data, rows, how)
    n, chunk = len(data.particles), max(PREDICT_CHUNK, len(rows) // 20)
    rot, origin = np.empty((len(rows), 3, 3)), np.empty((len(rows), 2))
    quiet = replace(how, progress=False)
    bar = tqdm(total=len(rows), desc="poses", unit="img", disable=not (how.progress and dist.is_main()))
    for start in range(0, len(rows), chunk):
        left = len(rows) - start
        if start and not dist.from_main(float(refined_poses_fit(clock.costs, left + to_predict_after, n, clock.left()))):
            rot[start:], origin[start:] = predict(encoder, volume, data, rows[start:], quiet, refine=False)
            log(f"finish: the encoder's poses for the last {left} of {len(rows)} particles, unrefined: refining "
                f"them does not fit in the {clock.left() / 60:.1f} min left")
            bar.update(left)
            break
        part, t0 = slice(start, start + chunk), time.time()
        rot[part], origin[part] = predict(encoder, volume, data, rows[part], quiet)
        clock.costs.predict_s = (time.time() - t0) / len(rows[part])
        bar.update(len(rows[part]))
    bar.close()
    return rot, origin


def final_subset(n: int, size: int, seed: int, include: np.ndarray | None = None) -> np.ndarray:
    """The sorted rows the refinement rounds use: all ``n`` if n ≤ size, else ``size`` at random,
    of which the rows ``include`` (e.g. the warm-start subset, itself random) as far as they go."""
    if n <= size:
        return np.arange(n)
    gen = np.random.default_rng(seed)
    if include is None or len(include) == 0:
        return np.sort(gen.choice(n, size, replace=False))
    include = np.asarray(include)[:size]
    others = np.setdiff1d(np.arange(n), include)
    return np.sort(np.concatenate([include, gen.choice(others, size - len(include), replace=False)]))


@dataclass
class Deadline:
    """The time the finish must end by (``time.time()`` seconds) and the costs of its passes,
    updated as each pass is timed (``time_limit.FinishCosts``)."""

    at: float
    costs: FinishCosts

    def left(self) -> float:
        return self.at - time.time()


def measure_costs(encoder, volume, data: TrainingData, how: PoseSettings, probe: int = 128) -> FinishCosts:
    """Seconds per image of the finish's passes, timed on ``probe`` images: a pose (encoder and
    refinement at the finish's radius, the loss radius at its end), the reconstruction (its
    fixed cost spread over the probe: an overestimate for larger sets), a refinement from those
    poses (a round's), the encoder alone and the fit scores (a render each, as the contrast
    scales)."""
    rows = np.arange(min(probe, len(data.particles)))
    quarter = rows[: max(1, len(rows) // 4)]
    at_end = replace(how, radius=data.train_box / 2, progress=False)
    t0 = time.time()
    rot, origin = predict(encoder, volume, data, rows, at_end)
    t1 = time.time()
    reconstruct(data, rows, torch.from_numpy(rot).float(), torch.from_numpy(origin / data.apix).float(),
                volume.oversample, how.workers)
    t2 = time.time()
    predict(encoder, volume, data, quarter, at_end, start=(rot[quarter], origin[quarter]))
    t3 = time.time()
    predict(encoder, volume, data, quarter, at_end, refine=False)
    t4 = time.time()
    fit_scores(volume, data, rows, (rot, origin), device=how.device, workers=how.workers)
    per = 1 / len(rows)
    return FinishCosts(predict_s=(t1 - t0) * per, encode_s=(t4 - t3) / len(quarter), refine_s=(t3 - t2) / len(quarter),
                       reconstruct_s=(t2 - t1) * per, render_s=(time.time() - t4) * per)


def refine_rounds(encoder, volume, data: TrainingData, rows: np.ndarray, rounds: int, how: PoseSettings,
                  after_round: Callable[[int], None] = lambda k: None,
                  log: Callable[[str], None] = lambda line: None, deadline: Deadline | None = None,
                  prior: Prior | None = None) -> tuple[Poses, float]:
    """Poses of ``rows`` from the encoder (or ``prior``: ``first_poses``), then up to ``rounds`` ×
    (reconstruct ``volume`` from them, refine them against it up to the radius the images carry
    signal to, measured once from the first poses (``measure_signal_radius``), re-search the
    worst-fitting ``how.research_fraction`` of them globally, ``train/research.py``), ending early
    once a round moves fewer than CONVERGED_MOVED of them by more than MOVED_DEG; ``after_round(k)`` after
    round k's reconstruction (1-based). Returns the poses and that radius.

    With a ``deadline``, each pass is timed (its cost per image updates ``deadline.costs``) and a
    round starts only if it fits in the time left with the passes that must follow it: a pose
    for every particle not in ``rows``, then the map from all of them. The time left after the
    last round re-searches more of the worst-fitting poses (``research_in_time_left``): a 20-min
    run on 10k particles ended 216 s early, with a round of 131 s not fitting in its last 234 s."""
    n = len(data.particles)
    poses = first_poses(encoder, volume, data, rows, how, prior, log, deadline, n - len(rows))
    how = replace(how, signal_radius=measure_signal_radius(volume, data, rows, poses, how, log))
    searched = None  # positions into rows the last round re-searched, against the map the volume still holds
    for k in range(1, rounds + 1):
        before = poses[0]
        fit = None if deadline is None else rounds_that_fit(deadline.costs, n - len(rows), n, len(rows), deadline.left())
        if fit is not None and dist.from_main(float(fit)) < 1:  # rank 0's clock decides for every rank
            log(f"finish: stopped after {k - 1} of {rounds} refinement rounds: the next does not fit in the "
                f"{deadline.left() / 60:.1f} min left")
            break
        t0 = time.time()
        load_reconstruction(volume, data, rows, poses, how)
        t_reconstruct = time.time() - t0
        after_round(k)
        t0 = time.time()
        poses = predict(encoder, volume, data, rows, how, start=poses)
        t_research = time.time()
        poses, searched = research_poses(volume, data, rows, poses, round(how.research_fraction * len(rows)),
                                         how.device, how.workers, signal_to=how.signal_radius)
        if deadline is not None:  # a round's refinement cost includes a re-search of its usual share
            if len(searched):
                deadline.costs.research_s = (time.time() - t_research) / len(searched)
            deadline.costs.reconstruct_s = t_reconstruct / len(rows)
            deadline.costs.refine_s = (t_research - t0) / len(rows) + how.research_fraction * deadline.costs.research_s
        moved = float(dist.from_main(float(np.mean(distance_modulo_group_deg(before, poses[0], how.symmetry) > MOVED_DEG))))
        log(f"final refinement {k}/{rounds}: reconstructed from {len(rows)} poses, refined; "
            f"{100 * moved:.1f}% of them moved > {MOVED_DEG:g}°")
        if moved < CONVERGED_MOVED and k < rounds:
            log(f"finish: poses converged after {k} of {rounds} refinement rounds (under {100 * CONVERGED_MOVED:g}% moved)")
            break
    if deadline is not None and searched is not None:
        poses = research_in_time_left(volume, data, rows, poses, searched, how, deadline, log)
    return poses, how.signal_radius


def measure_signal_radius(volume, data: TrainingData, rows: np.ndarray, poses: Poses, how: PoseSettings,
                          log: Callable[[str], None] = lambda line: None) -> float:
    """The refinement radius (Fourier px of the training box) the images of ``rows`` at ``poses``
    carry signal to (``signal_radius.signal_radius``): ``volume`` reconstructed from all but the
    ``held_out`` rows, their ring SNR against it. Leaves ``volume`` holding that map."""
    held = held_out(len(rows))
    if not len(held):  # too few rows to hold any out
        return MAX_FRACTION * data.train_box
    kept = np.setdiff1d(np.arange(len(rows)), held)
    load_reconstruction(volume, data, rows[kept], (poses[0][kept], poses[1][kept]), how)
    snr = ring_snr(volume, data, rows[held], poses[0][held], poses[1][held], how.device)
    radius = float(dist.from_main(signal_radius(snr, data.train_box)))
    box = data.train_box
    log(f"finish: per-image ring SNR of {len(held)} held-out images at shells 4/8/12/16/20 of {box}: "
        + " / ".join(f"{snr[s]:.2f}" for s in (4, 8, 12, 16, 20) if s < len(snr))
        + f"; refinement compares up to shell {radius:g} ({box * MAX_FRACTION:g} at most)")
    return radius


def research_in_time_left(volume, data: TrainingData, rows: np.ndarray, poses: Poses, searched: np.ndarray,
                          how: PoseSettings, deadline: Deadline, log: Callable[[str], None]) -> Poses:
    """After the rounds, the time no round fits in: the next worst-fitting poses of ``rows`` (not
    ``searched``, which the last round re-searched against this map) re-searched in chunks of a
    round's share, each timed, while the next fits (``research_that_fits``, at least MIN_RESEARCH
    of the rows) before the passes that must follow."""
    n, chunk = len(data.particles), max(1, round(how.research_fraction * len(rows)))
    t0, total = time.time(), 0
    while len(searched) < len(rows):
        fit = int(dist.from_main(float(research_that_fits(deadline.costs, n - len(rows), n, deadline.left()))))
        if fit < min(MIN_RESEARCH * len(rows), len(rows) - len(searched)):
            break
        t_chunk = time.time()
        poses, more = research_poses(volume, data, rows, poses, min(fit, chunk), how.device, how.workers,
                                     exclude=searched, signal_to=how.signal_radius)
        deadline.costs.research_s = (time.time() - t_chunk) / max(len(more), 1)
        searched, total = np.union1d(searched, more), total + len(more)
    if total:
        log(f"finish: {total} more of the worst-fitting poses re-searched in the time left ({time.time() - t0:.0f} s)")
    return poses


def final_map_and_poses(encoder, volume, data: TrainingData, how: PoseSettings, subset_size: int, rounds: int,
                        seed: int, after_round: Callable[[int], None] = lambda k: None,
                        log: Callable[[str], None] = lambda line: None, deadline: float | None = None,
                        map_rows: Callable[[Poses], np.ndarray] | None = None, prior: Prior | None = None) -> Poses:
    """The finish (module docstring): returns every particle's pose and leaves ``volume`` holding
    the map reconstructed from them: all, or the rows ``map_rows(poses)`` chooses (called with
    ``volume`` still holding the map every pose was refined against, e.g. to score the fits).
    The rows of ``prior`` (the poses training refined for them) join the subset, and start from
    their prior pose (``first_poses``).

    With a ``deadline`` (``time.time()`` seconds), the costs are probed first and the subset
    cut to what fits (``time_limit.plan_finish``); then, whatever the probe said, rounds run while
    the next one still fits at the costs measured on the passes so far (up to ``rounds``: a probe
    can be 3× off on a shared machine), and the poses of many particles are refined only while
    that fits (``predict_in_time``); the pass over all particles and the final reconstruction
    always run."""
    n = len(data.particles)
    clock = None
    if deadline is not None:
        clock = Deadline(deadline, measure_costs(encoder, volume, data, how))
        plan = plan_finish(clock.costs, n, subset_size, rounds, clock.left())
        log(f"finish: {plan.rounds} of {rounds} refinement rounds on {min(plan.subset, n)} particles fit in the "
            f"{clock.left() / 60:.1f} min left (estimated {plan.seconds / 60:.1f} min)"
            + ("" if plan.refine_all else "; not even refined poses for all do, by the probe's costs")
            + ("; more run if the measured passes leave time" if plan.rounds < rounds else ""))
        subset_size = int(dist.from_main(float(plan.subset)))
    if rounds == 0:  # one pass over all particles, then the map
        rot, origin = first_poses(encoder, volume, data, None, how, prior, log, clock)
        rows = np.arange(n) if map_rows is None else map_rows((rot, origin))
        load_reconstruction(volume, data, rows, (rot, origin), how)
        log(f"poses for all {n} particles predicted")
        return rot, origin
    subset = final_subset(n, subset_size, seed, None if prior is None else prior[0])
    (rot_s, origin_s), radius = refine_rounds(encoder, volume, data, subset, rounds, how, after_round, log, clock,
                                              prior)
    how = replace(how, signal_radius=radius)  # the other particles' refinement against the subset's map too
    if n > len(subset):
        rest = np.setdiff1d(np.arange(n), subset)  # the subset keeps its refined poses
        rot, origin = np.empty((n, 3, 3)), np.empty((n, 2))
        rot[rest], origin[rest] = predict_in_time(encoder, volume, data, rest, how, clock, log=log)
        rot[subset], origin[subset] = rot_s, origin_s
        log(f"poses for all {n} particles predicted")
    else:
        rot, origin = rot_s, origin_s
    rows = np.arange(n) if map_rows is None else map_rows((rot, origin))
    load_reconstruction(volume, data, rows, (rot, origin), how)
    if clock is not None:
        log(f"finish: ended {clock.left():+.0f} s from the deadline")
    return rot, origin
