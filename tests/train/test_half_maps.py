"""Half maps from one set of poses: the true poses give half maps that agree far out, random
poses ones that agree less."""

from __future__ import annotations

import numpy as np

from cryoai.data.particles import load_particles
from cryoai.data.training_data import TrainingData
from cryoai.geometry.rotations import random_rotations
from cryoai.train.half_maps import half_maps, split_halves


def test_split_halves_is_balanced_and_seeded():
    labels = split_halves(11, 3)
    assert sorted(np.bincount(labels)[1:]) == [5, 6]
    assert (split_halves(11, 3) == labels).all() and not (split_halves(11, 4) == labels).all()


def test_true_poses_resolve_far_better_than_random_ones(tiny_set, one_thread):
    particles = load_particles(tiny_set / "particles.star")
    data = TrainingData(particles, 16, 16)
    rows = np.arange(len(particles))
    true = half_maps(data, rows, particles.rotations, particles.origins_A)
    rand = half_maps(data, rows, random_rotations(len(rows), np.random.default_rng(0)), np.zeros((len(rows), 2)))
    assert true.maps[0].shape == (16, 16, 16)
    assert true.resolution_px < 4.0, true.fsc  # SNR 10, 60 images a half: most of the way to Nyquist
    # random poses give both halves the molecule's spherical average, which agrees between them
    # at every shell where it has power (a weak failure signal alone): shell 3 tells them apart
    assert true.fsc[3] > 0.95 > rand.fsc[3] + 0.2, (true.fsc, rand.fsc)
    assert abs(true.resolution_A - true.resolution_px * data.apix) < 1e-6
