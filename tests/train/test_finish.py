"""The finish (train/finish.py), called with explicit models and data as benchmarks do."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from cryoai.data.particles import load_particles
from cryoai.phantom import phantom_map
from cryoai.simulate import simulate
from cryoai.data.training_data import TrainingData
from cryoai.geometry.symmetry import distance_modulo_group_deg
from cryoai.train import finish
from cryoai.train.finish import (PoseSettings, final_map_and_poses, final_subset, first_poses, load_reconstruction,
                                 measure_costs, predict, predict_in_time)
from cryoai.train.time_limit import FinishCosts
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
    warm = np.array([3, 500, 998])  # the warm-start subset's rows are all in it
    rows = final_subset(1000, 30, 0, include=warm)
    assert len(rows) == 30 and np.all(np.diff(rows) > 0) and set(warm) <= set(rows)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_finish")
    simulate(phantom_map(16, 8.0), 8.0, 60, out, snr=10.0, shift_std_A=4.0, seed=1, progress=False)
    return TrainingData(load_particles(out / "particles.star"), 16, 16)


def test_first_poses_take_the_prior_and_predict_only_the_rest(tiny_data, monkeypatch):
    """Rows the prior holds start from its poses exactly; the others get the encoder's refined
    poses, the same as ``predict`` alone gives them, when the prior agrees with the encoder (here
    it is the encoder's own poses); the encoder refines only the 20 rows the prior lacks (its other
    pass is unrefined: the agreement); without a prior every row is predicted."""
    encoder, volume = build_models(tiny_config(), "cpu")
    how = PoseSettings(radius=8.0, symmetric=True)
    rows = np.arange(5, 60)  # the rows asked about; the prior also holds rows 0-4, not among them
    prior_rows = np.arange(0, 40)
    prior = (prior_rows, predict(encoder, volume, tiny_data, prior_rows, how, refine=False))
    refined = []

    def counted(encoder, volume, data, rows, *args, refine=True, **kwargs):
        refined.extend([len(rows)] if refine else [])
        return predict(encoder, volume, data, rows, *args, refine=refine, **kwargs)

    monkeypatch.setattr(finish, "predict", counted)
    lines = []
    rot, origin = first_poses(encoder, volume, tiny_data, rows, how, prior, log=lines.append)
    assert refined == [20] and "the encoder's for 20" in lines[-1]
    assert np.array_equal(rot[:35], prior[1][0][5:]) and np.array_equal(origin[:35], prior[1][1][5:])
    alone = predict(encoder, volume, tiny_data, rows[35:], how)
    assert np.allclose(rot[35:], alone[0], atol=1e-6) and np.allclose(origin[35:], alone[1], atol=1e-6)
    refined.clear()
    first_poses(encoder, volume, tiny_data, rows, how, None)
    assert refined == [len(rows)]


def test_an_encoder_that_disagrees_with_the_prior_gives_way_to_a_global_search(tmp_path):
    """An untrained encoder and a prior at the true poses of rows 0-59 (a phantom, L = 32, SNR 10;
    at L = 16 the search's coarse box of 2.5 px cannot tell the phantom's views apart): the
    encoder lies far from the prior, so rows 60-99 are searched globally against the prior's map
    and land near their true poses, where the encoder's are random."""
    simulate(phantom_map(32, 4.0), 4.0, 100, tmp_path, snr=10.0, shift_std_A=4.0, seed=1, progress=False)
    data = TrainingData(load_particles(tmp_path / "particles.star"), 32, 16)
    truth = load_particles(tmp_path / "truth.star")
    encoder, volume = build_models(tiny_config(train_box=32), "cpu")
    how = PoseSettings(radius=16.0, symmetric=True)
    prior = (np.arange(60), (truth.rotations[:60], truth.origins_A[:60]))
    assert finish.encoder_agreement_deg(encoder, volume, data, prior, how) > finish.TRUST_ENCODER_DEG
    lines = []
    rot, origin = first_poses(encoder, volume, data, np.arange(100), how, prior, log=lines.append)
    assert "searched globally" in lines[0] and "a global search's for 40" in lines[-1]
    searched = distance_modulo_group_deg(rot[60:], truth.rotations[60:], "C1")
    encoders = distance_modulo_group_deg(predict(encoder, volume, data, np.arange(60, 100), how, refine=False)[0],
                                         truth.rotations[60:], "C1")
    assert np.median(searched) < 6 and np.median(encoders) > 40
    assert np.median(np.linalg.norm(origin[60:] - truth.origins_A[60:], axis=1)) < data.apix


def test_poses_are_refined_while_the_refined_rest_fits_then_the_encoders_are_kept(tiny_data, monkeypatch):
    """Chunks of 20 of 60 rows: with an hour left, all refined (as ``predict``); with no time
    left, the first chunk refined (it measures the cost), the rest the encoder's, unrefined
    (as ``predict(refine=False)``), and the log says so."""
    monkeypatch.setattr(finish, "PREDICT_CHUNK", 20)
    encoder, volume = build_models(tiny_config(), "cpu")
    how = PoseSettings(radius=8.0, symmetric=True)
    rows = np.arange(60)
    refined, unrefined = predict(encoder, volume, tiny_data, rows, how), predict(encoder, volume, tiny_data, rows, how,
                                                                                refine=False)
    costs = FinishCosts(predict_s=0.01, encode_s=0.001, refine_s=0.01, reconstruct_s=0.001)
    rot, origin = predict_in_time(encoder, volume, tiny_data, rows, how, finish.Deadline(time.time() + 3600, costs))
    assert np.allclose(rot, refined[0], atol=1e-6) and np.allclose(origin, refined[1], atol=1e-6)
    assert costs.predict_s != 0.01  # measured on the chunks
    lines = []
    rot, origin = predict_in_time(encoder, volume, tiny_data, rows, how, finish.Deadline(time.time(), costs), log=lines.append)
    assert np.allclose(rot[:20], refined[0][:20], atol=1e-6) and np.allclose(rot[20:], unrefined[0][20:], atol=1e-6)
    assert np.allclose(origin[20:], unrefined[1][20:], atol=1e-6) and not np.allclose(rot[20:], refined[0][20:], atol=1e-3)
    assert len(lines) == 1 and "last 40 of 60" in lines[0]


def test_a_rounds_cost_holds_its_usual_share_of_re_search_not_a_large_one(tiny_data, monkeypatch):
    """A round that re-searched all 60 poses (0.3 s, faked): the re-search costs 0.3/60 s per
    image, and the round's refinement cost per image holds a tenth of that, not all of it (the
    next round was costed 2× and did not fit)."""
    def research(volume, data, rows, poses, count, *args, exclude=None, **kwargs):
        time.sleep(0.3)
        return poses, np.arange(len(rows))

    monkeypatch.setattr(finish, "research_poses", research)
    encoder, volume = build_models(tiny_config(), "cpu")
    costs = FinishCosts(predict_s=0.01, encode_s=0.001, refine_s=0.01, reconstruct_s=0.001)
    finish.refine_rounds(encoder, volume, tiny_data, np.arange(60), 1, PoseSettings(radius=8.0, symmetric=True),
                         deadline=finish.Deadline(time.time() + 3600, costs))
    assert 0.3 / 60 <= costs.research_s < 0.4 / 60
    assert costs.refine_s * 60 < 0.3 * 0.1 + 0.25  # the refinement itself, of 60 tiny images, well under 0.25 s


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
    assert rounds == [1, 2] and len(lines) == 4 and "ring SNR" in lines[0] and "all 60 particles" in lines[-1]
    assert not np.allclose(volume.values.detach().numpy(), before.numpy())
    costs = measure_costs(encoder, volume, tiny_data, how)
    assert costs.predict_s > 0 and costs.reconstruct_s > 0 and costs.render_s > 0


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


def test_the_finish_runs_more_rounds_than_planned_when_the_passes_are_faster(tiny_data, monkeypatch):
    """The probe's costs plan 1 of 4 rounds (its per-image costs 10× inflated here: the real probe
    overestimates too, its fixed cost spread over 128 images); the rounds then re-check with the
    costs measured on their own passes and run all 4, still ending before the deadline. Before,
    the planned count was a cap: 1 round, and the time the probe overestimated went unused."""
    import time
    from dataclasses import replace

    from cryoai.train import finish
    from cryoai.train.time_limit import plan_finish

    encoder, volume = build_models(tiny_config(), "cpu")
    how = PoseSettings(radius=8.0, symmetric=True)
    true_costs = measure_costs(encoder, volume, tiny_data, how)
    inflated = replace(true_costs, **{k: 10 * getattr(true_costs, k)
                                      for k in ("predict_s", "encode_s", "refine_s", "reconstruct_s")})
    seconds = 0.5 * (plan_finish(inflated, 60, 60, 1, 1e9).seconds + plan_finish(inflated, 60, 60, 2, 1e9).seconds)
    assert plan_finish(inflated, 60, 60, 4, seconds).rounds == 1  # what the inflated probe plans
    monkeypatch.setattr(finish, "measure_costs", lambda *a, **k: replace(inflated))
    monkeypatch.setattr(finish, "CONVERGED_MOVED", -1.0)  # the rounds never stop for converged poses here
    rounds, lines = [], []
    deadline = time.time() + seconds
    final_map_and_poses(encoder, volume, tiny_data, how, subset_size=60, rounds=4, seed=0,
                        after_round=rounds.append, log=lines.append, deadline=deadline)
    assert "1 of 4 refinement rounds" in lines[0] and "more run if" in lines[0]
    assert rounds == [1, 2, 3, 4], lines
    assert time.time() <= deadline + 0.5


def test_the_rounds_stop_once_the_poses_stop_moving(tiny_data, monkeypatch):
    """A round that moves no pose (refinement and re-search return what they were given) ends
    the rounds: 1 of 4 run, logged with the share moved; the final map is still made."""
    from cryoai.train import finish

    real_predict = finish.predict
    monkeypatch.setattr(finish, "predict", lambda encoder, volume, data, rows, how, start=None, refine=True:
                        start if start is not None else real_predict(encoder, volume, data, rows, how, refine=refine))
    monkeypatch.setattr(finish, "research_poses", lambda volume, data, rows, poses, count, *a, **k:
                        (poses, np.arange(min(count, len(rows)))))
    encoder, volume = build_models(tiny_config(), "cpu")
    rounds, lines = [], []
    final_map_and_poses(encoder, volume, tiny_data, PoseSettings(radius=8.0, symmetric=True), subset_size=60,
                        rounds=4, seed=0, after_round=rounds.append, log=lines.append)
    assert rounds == [1]
    assert "ring SNR" in lines[0] and "0.0% of them moved > 5°" in lines[1] and "converged after 1 of 4" in lines[2], lines


def test_the_time_left_after_the_rounds_re_searches_more_of_the_worst(tiny_data, monkeypatch):
    """Under a deadline with time to spare, once the rounds end the time left re-searches more of
    the worst-fitting poses, a round's share at a time, never one re-searched against the same
    map already; without a deadline, nothing more."""
    from cryoai.train import finish

    calls = []

    def research(volume, data, rows, poses, count, *args, exclude=None, **kwargs):
        calls.append((count, exclude))
        skip = np.zeros(len(rows), dtype=bool) if exclude is None else np.isin(np.arange(len(rows)), exclude)
        return poses, np.flatnonzero(~skip)[:count]

    monkeypatch.setattr(finish, "research_poses", research)
    encoder, volume = build_models(tiny_config(), "cpu")
    lines = []
    final_map_and_poses(encoder, volume, tiny_data, PoseSettings(radius=8.0, symmetric=True), subset_size=60,
                        rounds=1, seed=0, log=lines.append, deadline=time.time() + 600)
    assert calls[0] == (6, None)  # the round's: a tenth of 60
    assert [count for count, _ in calls[1:]] == [6] * 9  # the other 54 fit in 10 minutes, a round's share at a time
    for k, (_, exclude) in enumerate(calls[1:], 1):  # never one already re-searched against this map
        assert np.array_equal(exclude, np.arange(6 * k))
    assert any("54 more of the worst-fitting poses re-searched" in line for line in lines), lines
    calls.clear()
    final_map_and_poses(encoder, volume, tiny_data, PoseSettings(radius=8.0, symmetric=True), subset_size=60,
                        rounds=1, seed=0, log=lines.append)
    assert len(calls) == 1  # without a time limit, the rounds alone


def test_refinement_from_given_poses_uses_one_start(monkeypatch):
    """The in-plane starts (``how.turns``) are for the encoder's poses; refining given poses
    (a round's) starts from them alone."""
    from types import SimpleNamespace

    from cryoai.train import finish

    turns = []
    monkeypatch.setattr(finish, "predict_poses_sharded", lambda *a, **k: turns.append(k["turns"]))
    how = PoseSettings(radius=8.0, symmetric=True, turns=4)
    data = SimpleNamespace(train_box=16)
    finish.predict(None, None, data, None, how)
    finish.predict(None, None, data, None, how, start=(np.eye(3)[None], np.zeros((1, 2))))
    assert turns == [4, 1]
