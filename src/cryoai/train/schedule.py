"""The training schedule: what each step does, as pure functions of the schedule position.

The position p ∈ [0, 1] is the fraction of the schedule done (``Trainer.fit``). With a warm-start
subset (its poses and volume), the stages are:

    0 … pretrain_until             PRETRAIN    encoder alone, on renders of the warm-start volume
    … freeze_volume_until          SUPERVISED  encoder on the data too, the volume frozen
    … 1                            JOINT       encoder and volume together

and the subset's poses supervise the encoder at full weight until ``freeze_volume_until``,
then fading linearly to zero at ``supervise_until``. Without a subset (``--no-warm-start``)
every step is JOINT and unsupervised. The loss radius marches out independently of the stage.
"""

from __future__ import annotations

from cryoai.train.config import TrainConfig

PRETRAIN, SUPERVISED, JOINT = "pretrain", "supervised", "joint"


def loss_radius(cfg: TrainConfig, position: float) -> float:
    """Radius (Fourier pixels of the training box) the loss compares at ``position``: it marches
    linearly from train_box/8 to train_box/2, reached at ``march_until``, then stays."""
    r0, r1 = cfg.train_box / 8, cfg.train_box / 2
    return r0 + (r1 - r0) * min(1.0, position / max(cfg.march_until, 1e-9))


def stage(cfg: TrainConfig, position: float, has_subset: bool) -> str:
    """PRETRAIN, SUPERVISED or JOINT (module docstring)."""
    if not has_subset:
        return JOINT
    if position < cfg.pretrain_until:
        return PRETRAIN
    if position < cfg.freeze_volume_until:
        return SUPERVISED
    return JOINT


def volume_trains(cfg: TrainConfig, position: float, has_subset: bool) -> bool:
    """Whether the volume's optimiser steps (it does in the JOINT stage only)."""
    return stage(cfg, position, has_subset) == JOINT


def supervision_weight(cfg: TrainConfig, position: float, has_subset: bool) -> float:
    """Weight of the pose supervision (subset poses and synthetic images) in the data stages:
    ``cfg.supervision_weight`` until ``freeze_volume_until``, fading linearly to 0 at
    ``supervise_until``; 0 without a subset."""
    if not has_subset or position >= cfg.supervise_until:
        return 0.0
    if position < cfg.freeze_volume_until:
        return cfg.supervision_weight
    fade = (position - cfg.freeze_volume_until) / max(cfg.supervise_until - cfg.freeze_volume_until, 1e-9)
    return cfg.supervision_weight * (1 - fade)
