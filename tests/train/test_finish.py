"""The finish (train/finish.py), called with explicit models and data as benchmarks do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryoai.data.particles import load_particles
from cryoai.phantom import phantom_map
from cryoai.simulate import simulate
from cryoai.data.training_data import TrainingData
from cryoai.train.finish import PoseSettings, final_map_and_poses, final_subset, load_reconstruction, measure_costs
from cryoai.train.predict import refinement_radius
from cryoai.train.trainer import build_models
from helpers import tiny_config


def test_refinement_radius_is_a_quarter_box_or_less():
    """One place decides: box/4, or the radius the volume is known to if smaller (a volume trained
    to a smaller loss radius); a reconstruction is known to Nyquist, so box/4."""
    assert refinement_radius(64, 32.0) == 16.0
    assert refinement_radius(64, 64 / 2) == 16.0
    assert refinement_radius(64, 10.0) == 10.0


def test_final_subset():
    assert np.array_equal(final_subset(50, 50, 0), np.arange(50))
    rows = final_subset(1000, 30, 0)
    assert len(rows) == 30 and np.all(np.diff(rows) > 0) and np.array_equal(rows, final_subset(1000, 30, 0))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_finish")
    simulate(phantom_map(16, 8.0), 8.0, 60, out, snr=10.0, shift_std_A=4.0, seed=1, progress=False)
    return TrainingData(load_particles(out / "particles.star"), 16, 16)


def test_final_map_and_poses_from_explicit_models(tiny_data):
    """Rounds on a subset, then every particle: poses for all, a round callback per round, and
    the volume left holding the final reconstruction."""
    encoder, volume = build_models(tiny_config(), "cpu")
    before = volume.values.detach().clone()
    rounds, lines = [], []
    how = PoseSettings(radius=8.0, symmetric=True)
    rot, origin = final_map_and_poses(encoder, volume, tiny_data, how, subset_size=20, rounds=2, seed=0,
                                      after_round=rounds.append, log=lines.append)
    assert rot.shape == (60, 3, 3) and origin.shape == (60, 2) and np.isfinite(origin).all()
    assert np.allclose(rot @ rot.transpose(0, 2, 1), np.eye(3), atol=1e-5)
    assert rounds == [1, 2] and len(lines) == 3 and "all 60 particles" in lines[-1]
    assert not np.allclose(volume.values.detach().numpy(), before.numpy())
    costs = measure_costs(encoder, volume, tiny_data, how)
    assert costs.predict_s > 0 and costs.reconstruct_s > 0


def test_the_final_map_is_reconstructed_from_the_rows_kept(tiny_data):
    """``map_rows`` chooses the rows of the final map, given every pose while the volume still
    holds the map they were refined against: the map is the reconstruction of those rows alone."""
    encoder, volume = build_models(tiny_config(), "cpu")
    how = PoseSettings(radius=8.0, symmetric=True)
    seen = []

    def first_half(poses):
        seen.append(poses[0].shape)
        return np.arange(30)

    rot, origin = final_map_and_poses(encoder, volume, tiny_data, how, subset_size=60, rounds=1, seed=0,
                                      map_rows=first_half)
    assert seen == [(60, 3, 3)]
    final = volume.values.detach().clone()
    load_reconstruction(volume, tiny_data, np.arange(30), (rot, origin), how)
    assert torch.allclose(final, volume.values.detach())
    load_reconstruction(volume, tiny_data, np.arange(60), (rot, origin), how)
    assert not torch.allclose(final, volume.values.detach(), atol=1e-4)
