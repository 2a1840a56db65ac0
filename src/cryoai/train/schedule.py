"""The training schedule: what each step does, as pure functions of the schedule position.

The position p ∈ [0, 1] is the fraction of the schedule done (``Trainer.fit``). With a warm-start
subset (its poses and volume), the stages are:

    0 … pretrain_until             PRETRAIN    encoder alone, on renders of the warm-start volume
    … freeze_volume_until          SUPERVISED  encoder on the data too, the volume frozen
    … 1                            JOINT       encoder and volume together

and the subset's poses supervise the encoder at full weight until ``freeze_volume_until``,
then fading linearly to zero at ``supervise_until``. Without a subset (``--no-warm-start``)
every step is JOINT and unsupervised. The loss radius marches out independently of the stage.
Past the position 1 (``train_past_steps``) every step is JOINT at the full radius. When the loop
stops is ``stop_reason``.
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


# ---- when training stops ------------------------------------------------------------------------
TIME_LIMIT, STEP_LIMIT, CONVERGED = "time limit", "step limit", "converged"


def plateaued(history: list[float], checks: int, tolerance: float) -> bool:
    """Whether the last ``checks`` values of ``history`` (half-set resolutions in pixels, lower is
    better) fail to improve on the best before them by more than ``tolerance``."""
    if checks < 1 or len(history) <= checks:
        return False
    return min(history[-checks:]) > min(history[:-checks]) - tolerance


def stop_reason(cfg: TrainConfig, step: int, position: float, train_seconds: float, budget: float,
                history: list[float]) -> str | None:
    """Why the training loop stops before step ``step``, or None to go on:

    - TIME_LIMIT: the training-time budget (``Trainer.training_budget``) is spent;
    - STEP_LIMIT: ``cfg.steps`` are done, unless ``cfg.train_past_steps`` (under a time limit)
      lets training go on in the JOINT stage at the full loss radius while it still improves;
    - CONVERGED: the loss radius has reached the box edge (``march_until``) and the monitor's
      half-set resolution ``history`` has plateaued (``plateaued`` over ``cfg.plateau_checks``).
    """
    if train_seconds >= budget:
        return TIME_LIMIT
    if step >= cfg.steps and not (cfg.train_past_steps and budget < float("inf")):
        return STEP_LIMIT
    if position >= cfg.march_until and plateaued(history, cfg.plateau_checks, cfg.plateau_tolerance_px):
        return CONVERGED
    return None


def stop_message(reason: str, cfg: TrainConfig, step: int, history: list[float]) -> str:
    """The log line that says why training stopped."""
    if reason == CONVERGED:
        return (f"training stopped at step {step}, converged: half-set resolution {min(history):.2f} px, "
                f"not improved by more than {cfg.plateau_tolerance_px:g} px over {cfg.plateau_checks} checks")
    if reason == TIME_LIMIT:
        return f"training stopped at step {step}: time limit (the finish's time is reserved)"
    return f"training stopped at step {step}: step limit ({cfg.steps} steps)"
