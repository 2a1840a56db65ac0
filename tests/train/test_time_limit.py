"""The time limit's planners (train/time_limit.py), by hand: no training."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cryoai.train.time_limit import (MIN_FINISH_SUBSET, MIN_WARM_IMAGES, SAFETY, WARM_PER_IMAGE_S, WARM_SHARE,
                                     FINISH_SHARE, FinishCosts, finish_reserve, finish_seconds, keep_reserve,
                                     mandatory_seconds, plan_finish, research_that_fits, rounds_that_fit,
                                     searched_poses_fit, warm_start_images)

COSTS = FinishCosts(predict_s=0.01, encode_s=0.003, refine_s=0.008, reconstruct_s=0.002)  # a round: 0.01 s per image
# after the map, per particle of 10000: 2 renders (unmeasured: costed as back-projections), the
# half maps (1 back-projection) and 1000 encoder poses
AFTER = 3 * 0.002 + 1000 * 0.003 / 10000  # 0.0063 s
MANDATORY = 1.25 * 10000 * (0.01 + 0.002 + AFTER)  # 228.75 s


def test_the_passes_after_the_map_cost_two_renders_a_back_projection_and_the_encoder_sample():
    """With the render measured: 2·0.0005 + 0.002 + 1000·0.003/10000 = 0.0033 s per particle; of
    500 particles all 500 get an encoder pose: 2·0.0005 + 0.002 + 0.003 = 0.006 s."""
    measured = replace(COSTS, render_s=0.0005)
    assert measured.after_s(10000) == pytest.approx(0.0033)
    assert measured.after_s(500) == pytest.approx(0.006)
    assert COSTS.after_s(10000) == pytest.approx(AFTER)


def test_warm_start_keeps_its_size_without_a_limit_or_under_a_long_one():
    assert warm_start_images(None, 1500) == 1500
    assert warm_start_images(3600.0, 1500) == 1500


def test_warm_start_shrinks_to_its_share_of_a_short_limit_but_not_below_the_minimum():
    images = warm_start_images(120.0, 1500)
    assert MIN_WARM_IMAGES < images < 1500
    assert images * WARM_PER_IMAGE_S <= WARM_SHARE * 120.0
    assert warm_start_images(5.0, 1500) == MIN_WARM_IMAGES
    assert warm_start_images(5.0, 100) == 100  # never more than asked for


def test_the_finish_plans_every_round_when_time_allows():
    plan = plan_finish(COSTS, 10000, 5000, 4, seconds_left=3600.0)
    assert (plan.subset, plan.rounds) == (5000, 4)
    assert plan.seconds == pytest.approx(finish_seconds(COSTS, 10000, 5000, 4))


@pytest.mark.parametrize("seconds_left", [600.0, 480.0, 380.0, 300.0])
def test_the_finish_plans_fewer_rounds_when_time_is_short_and_never_more_than_fits(seconds_left):
    """mandatory: 1.25·10000·(0.012 + AFTER) = 228.75 s; a round on 5000: 1.25·5000·0.01 = 62.5 s."""
    plan = plan_finish(COSTS, 10000, 5000, 4, seconds_left)
    assert mandatory_seconds(COSTS, 10000) == pytest.approx(MANDATORY)
    assert plan.rounds == min(4, int((seconds_left - MANDATORY) // 62.5))
    assert plan.seconds <= seconds_left
    longer = plan_finish(COSTS, 10000, 5000, 4, seconds_left + 100.0)
    assert longer.rounds >= plan.rounds


def test_when_no_round_fits_the_subset_shrinks_to_one_that_does_or_there_are_none():
    plan = plan_finish(COSTS, 10000, 5000, 4, seconds_left=MANDATORY + 20.0)  # 20 s: one round on 1600
    assert plan.rounds == 1 and MIN_FINISH_SUBSET <= plan.subset == 1600
    assert plan.seconds <= MANDATORY + 20.0 + 1e-9
    none = plan_finish(COSTS, 10000, 5000, 4, seconds_left=MANDATORY + 2.0)
    assert none.rounds == 0
    over = plan_finish(COSTS, 10000, 5000, 4, seconds_left=100.0)  # the mandatory passes still run, unrefined
    assert over.rounds == 0 and not over.refine_all and over.seconds == pytest.approx(1.25 * 10000 * (0.005 + AFTER))
    assert plan_finish(COSTS, 10000, 5000, 4, seconds_left=MANDATORY).refine_all


def test_rounds_that_fit_during_the_finish():
    """After the subset's poses: 5000 left to predict (62.5 s), the map from 10000 (25 s) and
    what follows it (1.25·10000·AFTER = 78.75 s)."""
    left = 62.5 + 25.0 + 1.25 * 10000 * AFTER
    assert rounds_that_fit(COSTS, 5000, 10000, 5000, left + 3 * 62.5 + 1.0) == 3
    assert rounds_that_fit(COSTS, 5000, 10000, 5000, left + 62.5 - 1.0) == 0
    assert rounds_that_fit(COSTS, 5000, 10000, 5000, 10.0) == 0


def test_the_time_no_round_fits_in_re_searches_as_many_images_as_fit():
    """As ``test_rounds_that_fit_during_the_finish``, 40 s to spare after the passes that must
    follow, at 0.05 s per re-searched image (SAFETY 1.25): 640 images; none while unmeasured."""
    left = 62.5 + 25.0 + 1.25 * 10000 * AFTER
    assert research_that_fits(replace(COSTS, research_s=0.05), 5000, 10000, left + 40.0) == 640
    assert research_that_fits(COSTS, 5000, 10000, left + 40.0) == 0  # research_s 0: not measured yet
    assert research_that_fits(replace(COSTS, research_s=0.05), 5000, 10000, left - 1.0) == 0


def test_a_global_search_runs_while_it_and_the_passes_after_it_fit():
    """2000 images to search at 0.05 s (1.25·100 = 125 s), then as in
    ``test_rounds_that_fit_during_the_finish`` 5000 to predict, the map and what follows it."""
    left = 62.5 + 25.0 + 1.25 * 10000 * AFTER
    costs = replace(COSTS, research_s=0.05)
    assert searched_poses_fit(costs, 2000, 5000, 10000, left + 125.0 + 0.5)
    assert not searched_poses_fit(costs, 2000, 5000, 10000, left + 125.0 - 0.5)
    assert searched_poses_fit(costs, 0, 5000, 10000, left + 0.5)


def test_a_re_plan_during_training_keeps_the_time_the_first_plan_reserved():
    """First plan: MANDATORY + 270 s left, 3 rounds of 62.5 s reserved (FINISH_SHARE of 270 s).
    70 s of training later, ``finish_reserve`` would reserve 2 (0.7 of 200 s), handing the
    training a round each time it re-plans; ``keep_reserve`` keeps the first plan's seconds, with
    the rounds that fit in them at the new costs: fewer when a round costs more, more (up to the
    4 asked for) when it costs less, and more seconds only when the mandatory passes outgrow them."""
    first = finish_reserve(COSTS, 10000, 5000, 4, seconds_left=MANDATORY + 270.0)
    assert first.rounds == 3 and first.seconds == pytest.approx(MANDATORY + 187.5)
    assert finish_reserve(COSTS, 10000, 5000, 4, seconds_left=MANDATORY + 200.0).rounds == 2
    kept = keep_reserve(COSTS, 10000, 5000, 4, first, seconds_left=MANDATORY + 200.0)
    assert kept.rounds == 3 and kept.seconds == pytest.approx(first.seconds)
    late = keep_reserve(COSTS, 10000, 5000, 4, first, seconds_left=MANDATORY + 130.0)  # the training ran long
    assert late.rounds == 2 and late.seconds == pytest.approx(first.seconds)
    slower = replace(COSTS, refine_s=2 * COSTS.refine_s)  # a round: 1.25·5000·0.018 = 112.5 s
    kept = keep_reserve(slower, 10000, 5000, 4, first, seconds_left=MANDATORY + 270.0)
    assert kept.rounds == 1 and kept.seconds == pytest.approx(first.seconds)
    cheaper = replace(COSTS, refine_s=COSTS.refine_s / 4)  # a round: 1.25·5000·0.004 = 25 s: 7 fit, 4 asked
    kept = keep_reserve(cheaper, 10000, 5000, 4, first, seconds_left=MANDATORY + 270.0)
    assert kept.rounds == 4 and kept.seconds == pytest.approx(first.seconds)
    heavier = replace(COSTS, predict_s=3 * COSTS.predict_s)  # mandatory: MANDATORY + 250 s, more than kept
    kept = keep_reserve(heavier, 10000, 5000, 4, first, seconds_left=MANDATORY + 270.0)
    assert kept.rounds == 0 and kept.refine_all and kept.seconds == pytest.approx(MANDATORY + 250.0)


def test_the_training_leaves_the_finish_its_mandatory_passes_and_rounds_in_its_share_of_the_rest():
    assert FINISH_SHARE == 0.7
    reserve = finish_reserve(COSTS, 10000, 5000, 4, seconds_left=MANDATORY + 270.0)  # 0.7 of it: 189 s, 3 rounds of 62.5
    assert reserve.rounds == 3 and reserve.seconds == pytest.approx(MANDATORY + 3 * 62.5)
    assert finish_reserve(COSTS, 10000, 5000, 4, seconds_left=3600.0).rounds == 4
    short = finish_reserve(COSTS, 10000, 5000, 4, seconds_left=180.0)  # refined poses for all do not fit
    unrefined = 1.25 * 10000 * (0.003 + 0.002 + AFTER)  # 141.25 s, the training gets half of the rest
    assert not short.refine_all and short.seconds == pytest.approx(unrefined + 0.5 * (180.0 - unrefined))
    assert SAFETY > 1


# ---- end to end on the tiny set: the limit holds when the passes slow down after being measured ----
def test_a_tiny_time_limit_holds_when_the_finish_turns_out_slower_than_measured(tiny_set, tmp_path, monkeypatch,
                                                                               one_thread):
    """A 15-second limit, steps enough for hours and 50 refinement rounds asked for: the run trains
    until the time limit, and when every pose pass of the finish
    turns out 0.2 s slower than its probe measured, the finish stops the rounds that no longer
    fit. The run ends within the limit (+ 3 s: the last step, the final writes), says why
    training stopped, and the monitor recorded its checks."""
    import json
    import time

    from cryoai.data.particles import load_particles
    from cryoai.train import finish, trainer
    from cryoai.train.run_dir import RunDir
    from helpers import tiny_config

    monkeypatch.setattr(trainer, "END_SECONDS", 0.0)  # nothing is written after the finish here
    calls, predict = [], finish.predict

    def slower_after_the_probe(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            time.sleep(0.2)
        return predict(*args, **kwargs)

    particles = load_particles(tiny_set / "particles.star")
    cfg = tiny_config(max_minutes=0.25, steps=10**6, train_past_steps=True, final_iterations=50, volume_every=10,
                      checkpoint_every=10**6, log_every=50, plateau_checks=1000)
    run = RunDir(tmp_path / "run", quiet=True)
    t0 = time.time()
    fit = trainer.Trainer(particles, cfg, run, progress=False)
    monkeypatch.setattr(finish, "predict", slower_after_the_probe)
    fit.fit()
    wall = time.time() - t0
    run.close()
    assert wall <= 15.0 + 3.0, wall
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "training stopped at step" in log and "time limit" in log
    # the finish ends by the limit, or sooner where its reserve outlasts the rounds (the poses converged)
    assert any(end in log for end in ("finish: stopped after", "finish: 0 of 50", "finish: poses converged")), log[-2000:]
    records = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert any(r.get("stage") == "monitor" and r["half_resolution_px"] > 0 for r in records)
    assert [r["reason"] for r in records if r.get("stage") == "stopped"] == ["time limit"]


def test_a_larger_warm_start_box_costs_more_per_image_so_fewer_images_fit():
    """The cost model grows as (box/16)²: at box 24 a 2-minute limit fits 1/2.25 of the images at 16."""
    at16, at24 = warm_start_images(120.0, 10000, 16), warm_start_images(120.0, 10000, 24)
    assert at16 == int(WARM_SHARE * 120.0 / WARM_PER_IMAGE_S)
    assert at24 == int(WARM_SHARE * 120.0 / (WARM_PER_IMAGE_S * 2.25))
