"""The per-particle passes after the final map, on fixed inputs, for tests/train/test_distributed.py.

python -m torch.distributed.run --nproc_per_node 2 tests/train/ddp_passes.py PARTICLES.star OUT
(or plain ``python``: one process) writes OUT/rank{R}.pt: the fit scores and keep mask
(``judge_particles``), the contrast scales, ``classify`` into 3 classes of the kept particles
(labels, poses, class maps), and how many images this rank scored, measured and searched.
The inputs are the set's true poses and the map reconstructed from them.
"""

import faulthandler
import sys
from pathlib import Path

import numpy as np
import torch

from cryoai.data.particles import load_particles
from cryoai.data.training_data import TrainingData
from cryoai.models.voxel import VoxelVolume
from cryoai.train import classes, contrast, scores
from cryoai.train import distributed as dist
from cryoai.train.finish import PoseSettings, load_reconstruction
from cryoai.train.warmstart import WarmStart


def counting(function, into: list):
    """``function(data, rows, …)`` (a batch stream) that appends len(rows) to ``into``."""
    def wrapped(data, rows, *args, **kwargs):
        into.append(len(rows))
        return function(data, rows, *args, **kwargs)
    return wrapped


def passes(star: str, out: str) -> dict:
    dist.init("cpu")
    data = TrainingData(load_particles(star), 16, 16)
    p, n = data.particles, len(data.particles)
    poses, how = (p.rotations, p.origins_A), PoseSettings(8.0, True)
    volume = VoxelVolume(16)
    load_reconstruction(volume, data, np.arange(n), poses, how)
    scored, measured, searched, seeded = [], [], [], []
    scores.chunked_batches = counting(scores.chunked_batches, scored)
    contrast.chunked_batches = counting(contrast.chunked_batches, measured)
    global_search, warm_start = WarmStart.global_search, classes.warm_start
    in_seed = [False]

    def search(state, x, *args, **kwargs):  # the classification's global searches (not the seeds' own)
        if not in_seed[0]:
            searched.append(len(x))
        return global_search(state, x, *args, **kwargs)

    def seed(spectra, *args, **kwargs):
        seeded.append(len(spectra))
        in_seed[0] = True
        try:
            return warm_start(spectra, *args, **kwargs)
        finally:
            in_seed[0] = False

    WarmStart.global_search, classes.warm_start = search, seed
    columns = scores.judge_particles(volume, data, poses, 0.75)
    scales = contrast.contrast_scales(volume, data, np.arange(n), torch.from_numpy(p.rotations).float(),
                                      torch.from_numpy(p.origins_A / data.apix).float())
    kept = np.flatnonzero(columns["rlnSelected"])
    result = classes.classify(volume, data, kept, poses, 3, how, rounds=2, box=16, warm_subset=40)
    saved = dict(columns, scales=scales, labels=result.labels, rotations=result.poses[0], origins=result.poses[1],
                 maps=[v.state_dict()["values"].clone() for v in result.volumes],
                 scored=scored, measured=measured, searched=searched, seeded=seeded)
    torch.save(saved, Path(out) / f"rank{dist.rank()}.pt")
    dist.cleanup()
    return saved


if __name__ == "__main__":
    faulthandler.dump_traceback_later(90, exit=True)  # a hung rank prints its stacks
    passes(*sys.argv[1:])
