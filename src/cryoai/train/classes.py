"""Multi-class ab initio (``--classes K``): a heterogeneous refinement after the finish.

The way cryoSPARC users clean junk with a few ab initio classes, fitted to this pipeline: the
single-class run gives every particle a pose in one map; then K maps compete for the kept
particles. The search runs on the warm start's machinery (``train/warmstart.WarmStart``): the
images Fourier-cropped to a small box b, an exhaustive search over rotations × shifts. The
consensus poses only hold for what the consensus map explains, so each round every particle is
searched globally against every class map, and it goes to the class whose best projection
correlates best with it (``train/scores.correlation``); each class map is then reconstructed
from its members at their poses. Seeds: the particles ranked by how well they fit the consensus
map, split into K groups; the best group's reconstruction at the consensus poses, and for each
other group a warm start of its own (``train/warmstart.warm_start``, ab initio): a second
molecule, or junk, fits the consensus worst, and its poses there mean nothing. Last, at the training box, each
class map is reconstructed from its members, their poses refined locally against it
(``train/finish.predict``) and the map reconstructed again.

Under torchrun every rank searches its contiguous share of the images (``search_class``) and the
fits and poses are gathered; each rank back-projects its share into the class maps and the sums
are added up; the ab initio seeds are shared out between the ranks and broadcast; the labels are
rank 0's. Every rank so holds the same labels, poses and maps (the collectives of the last step
need the same class sizes everywhere). The searches' noise variance is then estimated from each
rank's share rather than from all images, so 2 ranks may assign a few particles otherwise than 1.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from cryoai.data.training_data import TrainingData
from cryoai.train import distributed as dist
from cryoai.train.finish import PoseSettings, load_reconstruction, predict
from cryoai.train.warmstart import WarmStart, WarmStartConfig, warm_start

Poses = tuple[np.ndarray, np.ndarray]  # RELION rotation matrices (N, 3, 3), origins (N, 2) in Å


@dataclass
class Classes:
    labels: np.ndarray  # (N,) class of each particle, 1 … K; 0 for those not classified
    volumes: list  # K volumes (copies of the run's), each holding its class map at the training box
    poses: Poses  # every particle's pose in its class's map (the given pose where not classified)


def classify(volume, data: TrainingData, rows: np.ndarray, poses: Poses, k: int, how: PoseSettings,
             rounds: int = 4, box: int = 32, seed: int = 0, warm_subset: int = 1500,
             log: Callable[[str], None] = lambda line: None) -> Classes:
    """K classes of the particles ``rows`` (module docstring), starting from their ``poses`` in
    the map ``volume`` holds; a search at ``box`` (Fourier-cropped), ``rounds`` rounds; the ab
    initio seeds from at most ``warm_subset`` particles each. Every class map is C1: each class
    but the first lies in its own ab initio frame."""
    how = replace(how, symmetry="C1")
    rows = np.asarray(rows)
    box = min(box, data.train_box)
    to_px = 1.0 / (data.apix * data.train_box / box)  # Å → pixels of the small box
    spectra, c = data.small_box_inputs(rows, box)
    state = WarmStart(spectra, c, box, WarmStartConfig(seed=seed), log=lambda line: None)
    state.estimate_support()  # the support radius; the random poses it draws are replaced
    state.support_fraction = dist.from_main(state.support_fraction)  # one support for every rank's maps
    rot = torch.from_numpy(poses[0][rows]).float()
    origin = torch.from_numpy(poses[1][rows] * to_px).float()
    state.rotations, state.origins = rot, origin
    radius = 3 * box / 8
    grid = state.rotation_grid_for(radius)
    members = seed_groups(state, rot, origin, k, radius)
    maps = [reconstruct_class(state, members == 0, rot[:, None], origin[:, None], torch.ones(len(rows), 1))]
    for j in range(1, k):  # the worse-fitting groups: each its own ab initio map, made by one rank in turn
        maker = (j - 1) % dist.world_size()
        spectrum = None
        if dist.rank() == maker:
            group = np.flatnonzero(members == j)[:warm_subset]
            spectrum = warm_start(spectra[group], c[group], box, WarmStartConfig(seed=seed + j),
                                  log=lambda line: None).spectrum
        maps.append(dist.from_rank(spectrum, maker))
    log(f"classes: seeds from {k} groups of the particles ranked by their fit to the consensus map "
        f"(the first at its poses, the others ab initio)")
    for r in range(1, rounds + 1):
        fits, found = [], []
        for j in range(k):
            fit, *poses_j = search_class(state, maps[j], radius, grid)
            fits.append(fit)
            found.append(tuple(poses_j))
        members = dist.from_rank(torch.stack(fits).argmax(0).numpy())  # rank 0's labels (the same, by construction)
        maps = [reconstruct_class(state, members == j, *found[j]) for j in range(k)]
        log(f"classes round {r}/{rounds}: sizes " + ", ".join(f"{(members == j).sum()}" for j in range(k)))
    return finish_classes(volume, data, rows, poses, members, found, 1.0 / to_px, how, log)


def search_class(state: WarmStart, spectrum: torch.Tensor, radius: float, grid: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every image's best poses in the class map ``spectrum``: a global search over ``grid`` ×
    shifts within ``radius``, polished locally; returns the fit of the best pose (M,) and the
    top-k poses: rotations (M, k, 3, 3), origins (M, k, 2) px, weights (M, k). Under torchrun each
    rank searches its share of the images and every rank gets all of them back."""
    state.spectrum = spectrum
    part = copy.copy(state)  # this rank's share of the images (all of them in a single process)
    share = dist.shard_range(state.m)
    part.X, part.C, part.m = state.X[share], state.C[share], len(state.X[share])
    cand_rot, cand_origin, _, _ = part.global_search(part.X, part.C, radius, grid)
    part.rotations, part.origins = cand_rot[:, 0], cand_origin[:, 0]
    cand_rot, cand_origin, weights, _ = part.local_search(radius, 4.0)  # polish the grid's pose
    fit = part.fit_correlations(torch.arange(part.m), cand_rot[:, 0], cand_origin[:, 0], radius)
    return dist.gather_tensors(fit, cand_rot, cand_origin, weights)


def seed_groups(state: WarmStart, rot: torch.Tensor, origin: torch.Tensor, k: int, radius: float) -> np.ndarray:
    """(M,) seed group 0 … k−1 of each image: ranked by its fit to the consensus map (reconstructed
    at the small box from all of them), best first, in k equal parts (each rank fits its share)."""
    state.spectrum = reconstruct_class(state, np.ones(state.m, dtype=bool), rot[:, None], origin[:, None],
                                       torch.ones(state.m, 1))
    mine = torch.arange(state.m)[dist.shard_range(state.m)]
    (fit,) = dist.gather_tensors(state.fit_correlations(mine, rot[mine], origin[mine], radius))
    order = torch.argsort(fit, descending=True).numpy()
    groups = np.empty(state.m, dtype=np.int64)
    groups[order] = np.arange(state.m) * k // state.m
    return groups


def reconstruct_class(state: WarmStart, member: np.ndarray, rot: torch.Tensor, origin: torch.Tensor,
                      weights: torch.Tensor) -> torch.Tensor:
    """The small-box map of the images ``member`` (bool (M,)) at their top-k poses (M, k, 3, 3),
    (M, k, 2) px with weights (M, k); the state's map is left unchanged. Under torchrun each rank
    back-projects the members in its share of the images and the sums are added up."""
    member = torch.from_numpy(np.asarray(member, dtype=bool)).clone()
    outside = torch.ones(state.m, dtype=torch.bool)
    outside[dist.shard_range(state.m)] = False
    member[outside] = False
    saved = state.numerator, state.denominator
    state.numerator, state.denominator = state.backproject(state.X[member], state.C[member], rot[member],
                                                           origin[member], weights[member])
    dist.sum_tensors(state.numerator, state.denominator)
    spectrum = state.reconstruct()
    state.numerator, state.denominator = saved
    return spectrum


def finish_classes(volume, data: TrainingData, rows: np.ndarray, poses: Poses, members: np.ndarray, found: list,
                   px_to_A: float, how: PoseSettings, log: Callable[[str], None]) -> Classes:
    """Each class at the training box: its members' best poses from the last round, a map
    reconstructed from them, the poses refined against it and the map reconstructed again."""
    n = len(data.particles)
    labels = np.zeros(n, dtype=np.int64)
    rotations, origins = poses[0].copy(), poses[1].copy()
    volumes = []
    for j, (rot, origin, _) in enumerate(found):
        mine = members == j
        class_rows = rows[mine]
        labels[class_rows] = j + 1
        start = (rot[mine, 0].double().numpy(), origin[mine, 0].double().numpy() * px_to_A)
        class_volume = copy.deepcopy(volume)
        if len(class_rows):
            load_reconstruction(class_volume, data, class_rows, start, how)
            refined = predict(None, class_volume, data, class_rows, how, start=start)
            load_reconstruction(class_volume, data, class_rows, refined, how)
            rotations[class_rows], origins[class_rows] = refined
        volumes.append(class_volume)
    log(f"classes: {len(found)} classes of " + ", ".join(f"{(labels == j + 1).sum()}" for j in range(len(found)))
        + f" particles ({len(rows)} classified of {n})")
    return Classes(labels, volumes, (rotations, origins))
