"""The training schedule (train/schedule.py), by hand at the stage boundaries.

Defaults: pretrain until 0.4, volume frozen until 0.5, supervision fading out by 0.65, the loss
radius reaching train_box/2 at 0.85.
"""

from __future__ import annotations

import pytest

from cryoai.train.config import TrainConfig
from cryoai.train.schedule import (CONVERGED, JOINT, PRETRAIN, STEP_LIMIT, SUPERVISED, TIME_LIMIT, loss_radius, plateaued,
                                   stage, stop_message, stop_reason, supervision_weight, volume_trains)

CFG = TrainConfig(train_box=64, supervision_weight=2.0)


@pytest.mark.parametrize("position,radius", [(0.0, 8.0), (0.425, 20.0), (0.85, 32.0), (1.0, 32.0)])
def test_loss_radius_marches_from_an_eighth_to_half_the_box(position, radius):
    assert loss_radius(CFG, position) == pytest.approx(radius)


@pytest.mark.parametrize("position,expected", [(0.0, PRETRAIN), (0.399, PRETRAIN), (0.4, SUPERVISED), (0.499, SUPERVISED),
                                               (0.5, JOINT), (1.0, JOINT)])
def test_stages_with_a_warm_start_subset(position, expected):
    assert stage(CFG, position, has_subset=True) == expected
    assert volume_trains(CFG, position, has_subset=True) == (expected == JOINT)


@pytest.mark.parametrize("position", [0.0, 0.45, 0.9])
def test_without_a_subset_every_step_is_joint_and_unsupervised(position):
    assert stage(CFG, position, has_subset=False) == JOINT
    assert volume_trains(CFG, position, has_subset=False)
    assert supervision_weight(CFG, position, has_subset=False) == 0.0


@pytest.mark.parametrize("position,weight", [(0.0, 2.0), (0.45, 2.0), (0.5, 2.0), (0.575, 1.0), (0.62, 0.4),
                                             (0.65, 0.0), (0.9, 0.0)])
def test_supervision_is_full_while_the_volume_is_frozen_then_fades(position, weight):
    assert supervision_weight(CFG, position, has_subset=True) == pytest.approx(weight)


# ---- when training stops (pure functions, no training) ------------------------------------------
STOP = TrainConfig(train_box=64, steps=1000, plateau_checks=3, plateau_tolerance_px=0.05)
IMPROVING = [6.0, 5.0, 4.4, 4.0, 3.7, 3.5, 3.35]
PLATEAU = [6.0, 4.0, 3.2, 3.19, 3.21, 3.18]


def test_a_plateau_is_no_improvement_beyond_the_tolerance_over_the_last_checks():
    assert plateaued(PLATEAU, 3, 0.05)
    assert not plateaued(IMPROVING, 3, 0.05)
    assert not plateaued(PLATEAU[:3], 3, 0.05)  # too few checks to say
    assert not plateaued([4.0, 3.9, 3.8, 3.7], 3, 0.05)  # slow, but beyond the tolerance
    assert plateaued([4.0, 3.9, 3.8, 3.7], 3, 0.5)


def test_training_stops_on_a_plateau_once_the_loss_radius_is_full():
    assert stop_reason(STOP, 900, 0.9, 10.0, float("inf"), PLATEAU) == CONVERGED
    assert stop_reason(STOP, 500, 0.5, 10.0, float("inf"), PLATEAU) is None  # radius still marching
    assert "converged: half-set resolution 3.18 px" in stop_message(CONVERGED, STOP, 900, PLATEAU)


def test_training_continues_past_its_steps_while_it_improves_within_the_time_limit():
    past = TrainConfig(train_box=64, steps=1000, train_past_steps=True)
    assert stop_reason(past, 1500, 1.0, 100.0, 600.0, IMPROVING) is None
    assert stop_reason(past, 1500, 1.0, 600.0, 600.0, IMPROVING) == TIME_LIMIT
    assert stop_reason(past, 1500, 1.0, 100.0, 600.0, PLATEAU) == CONVERGED
    assert stop_reason(past, 1000, 1.0, 100.0, float("inf"), IMPROVING) == STEP_LIMIT  # no limit: the steps rule


def test_without_train_past_steps_the_step_count_stops_an_improving_run():
    assert stop_reason(STOP, 1000, 1.0, 10.0, 600.0, IMPROVING) == STEP_LIMIT
    assert stop_reason(STOP, 999, 0.999, 10.0, 600.0, IMPROVING) is None
    assert stop_reason(STOP, 10, 0.5, 600.0, 600.0, []) == TIME_LIMIT
