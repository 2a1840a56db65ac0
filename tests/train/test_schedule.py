"""The training schedule (train/schedule.py), by hand at the stage boundaries.

Defaults: pretrain until 0.4, volume frozen until 0.5, supervision fading out by 0.65, the loss
radius reaching train_box/2 at 0.85.
"""

from __future__ import annotations

import pytest

from cryoai.train.config import TrainConfig
from cryoai.train.schedule import JOINT, PRETRAIN, SUPERVISED, loss_radius, stage, supervision_weight, volume_trains

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
