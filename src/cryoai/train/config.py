"""Training settings, with defaults chosen from the box size and the device."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class TrainConfig:
    # what is trained
    volume: str = "voxel"  # "voxel" (fast) or "fouriernet" (cryoAI's implicit network)
    loss: str = "symmetric"  # "symmetric" or "l2" (the ablation)
    warm_start: bool = True  # fixed-cost projection matching on a subset first
    symmetry: str = "C1"  # point group (RELION's name); not C1: trained modulo it in RELION's frame (README)
    # sizes
    train_box: int = 64  # images are Fourier-cropped to this box (pixels)
    encoder_box: int = 64  # the encoder sees images cropped to this box
    batch_size: int = 64
    encoder_widths: tuple[int, ...] = (16, 32, 64, 64)
    fouriernet_hidden: int = 128
    # schedule: total optimisation steps, and where each stage ends as a fraction of the schedule
    # (of the steps, or of the time budget under max_minutes when that runs out first).
    # Steps and time: the schedule spans `steps` or the training-time budget, whichever ends first
    # (a short limit compresses it). Training stops at the end of the schedule ("step limit"), when
    # the time budget is spent ("time limit"), or once the loss radius is full (march_until) and the
    # monitor's half-set resolution has not improved by more than plateau_tolerance_px over
    # plateau_checks checks ("converged"). With train_past_steps (set by `train --max-minutes`
    # without --steps/--epochs) the step count does not stop it: after the schedule, encoder and
    # volume go on training at the full radius while the resolution improves, within the limit.
    steps: int = 3500
    train_past_steps: bool = False
    plateau_checks: int = 3
    plateau_tolerance_px: float = 0.05
    pretrain_until: float = 0.4  # encoder alone, on renders of the warm-start volume at known poses
    freeze_volume_until: float = 0.5  # then on the data too, the warm-start volume still frozen
    supervise_until: float = 0.65  # synthetic and warm-start poses supervise the encoder, fading out
    march_until: float = 0.85  # the loss radius grows from train_box/8 to train_box/2
    # optimisation
    encoder_lr: float = 1e-3
    volume_lr: float = 1e-3  # relative to the volume's scale (voxel) / Adam step (FourierNet)
    supervision_weight: float = 1.0
    synthetic_batch: int = 32  # images rendered from the volume at known poses per step (0: none)
    synthetic_noise: float = 0.5  # their noise variance relative to the data's: 0.5 = twice the data's SNR
    # (what earlier releases did by accident; at the data's own SNR, 1.0, the encoder did not learn
    # at SNR 0.1: benchmarks/reconstruction.py, see the README)
    # warm start: subset size and box; None: chosen by the noise model (Trainer.warm_start_size):
    # 1500 images at box 20 for clean images, 4000 at box 24 when the images are noise-dominated
    # (benchmarks/warmstart_sizes.py: at SNR 0.1 the median pose error of the subset fell from 8.8° to
    # 5.2° (4AKE) and 17.0° to 8.6° (8ZPM), for ~6× the cost, ~110 s on one core; whole 20-minute
    # runs ended about as before, 5.2° / 2.45 px and 10.5° / 3.10 px: the finish's rounds decide those)
    warm_subset: int | None = None
    warm_box: int | None = None
    warm_iterations: int = 14
    # the convergence monitor, every volume_every steps: the warm-start subset's poses predicted and
    # refined, the half-set resolution from them, and their reconstruction loaded into the volume
    # when it beats the one loaded before; without a warm start, this many random particles (0: off)
    monitor_subset: int = 1500
    # after training: reconstruct from the poses, refine them, repeat, at most final_iterations times (fewer
    # when the poses stop moving or the time limit is near: train/finish.py; at SNR 0.05 the 10k runs
    # ran all 8 rounds of the previous cap with 1.1 % of poses still moving and 4–6 min of 30 left) …
    final_iterations: int = 12
    final_subset: int = 20000  # … on this many particles; then one pass over all of them
    # junk (train/scores.py, train/classes.py)
    keep: str = "auto"  # the final map from: "all", "auto" (a threshold on the fit scores) or the best FRACTION
    classes: int = 1  # K > 1: a heterogeneous refinement into K classes after the finish
    # speed (for a GPU: measure before relying on them)
    precision: str = "fp32"  # "bf16": the encoder's CNN under bfloat16 autocast
    compile: bool = False  # torch.compile the encoder
    # data loading
    workers: int = 0  # DataLoader processes reading the next batches ahead (0: in the training process; none under torchrun)
    # bookkeeping
    seed: int = 0
    log_every: int = 25
    checkpoint_every: int = 200
    volume_every: int = 500
    max_minutes: float | None = None
    invert: bool = False
    # noise model (data/noise_spectrum.py): whiten data and model by the noise spectrum estimated
    # outside a particle mask of this diameter (None: 0.75 × the box)
    whiten: bool = True
    particle_diameter_A: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def default_config(box: int, device: str, **overrides) -> TrainConfig:
    """Sizes a CPU trains in minutes, and the paper's scale on a GPU.

    CPU: train at box ≤ 64, encoder at ≤ 32 (poses to a few degrees; refinement does the rest),
    batch 64, batches read in the training process. GPU: box ≤ 128, encoder ≤ 128, batch 128,
    more steps, 4 processes reading batches ahead.
    """
    if device == "cpu":
        train_box = min(box, 64)
        cfg = TrainConfig(train_box=train_box, encoder_box=min(train_box, 32), batch_size=64)
    else:
        train_box = min(box, 128)
        cfg = TrainConfig(train_box=train_box, encoder_box=min(train_box, 128), batch_size=128,
                          encoder_widths=(32, 64, 128, 256), steps=10000, fouriernet_hidden=256, workers=4)
    for key, value in overrides.items():
        if value is not None:
            setattr(cfg, key, value)
    return fit_to_box(cfg, box)


def fit_to_box(cfg: TrainConfig, box: int) -> TrainConfig:
    """``cfg`` with the training and encoder boxes no larger than the images' ``box`` (pixels):
    the sizes the run really trains at (``TrainingData`` crops to the same)."""
    cfg.train_box = min(cfg.train_box, box)
    cfg.encoder_box = min(cfg.encoder_box, cfg.train_box)
    return cfg


# What a resumed run may change: how long and how fast it runs, and how often it reports;
# every other field fixes what the checkpoint holds or the order the data are drawn in.
RESUMABLE_FIELDS = ("max_minutes", "workers", "compile", "log_every", "checkpoint_every", "volume_every",
                    "keep", "classes",  # these two choose what the finish does with the poses
                    "train_past_steps", "plateau_checks", "plateau_tolerance_px")


def config_from_dict(values: dict) -> TrainConfig:
    """A TrainConfig from a saved ``to_dict`` (config.yaml or a checkpoint); unknown keys ignored."""
    known = {f.name for f in fields(TrainConfig)}
    values = {"whiten": False, **values}  # runs saved before the noise model did not whiten
    cfg = TrainConfig(**{k: v for k, v in values.items() if k in known})
    cfg.encoder_widths = tuple(cfg.encoder_widths)
    return cfg


def changed_fields(saved: dict, cfg: TrainConfig) -> list[str]:
    """Fields of ``cfg`` outside RESUMABLE_FIELDS whose value differs from the saved config
    ``saved`` (fields missing from either side are not compared)."""
    def plain(v):
        return list(v) if isinstance(v, (list, tuple)) else v

    now = cfg.to_dict()
    return [k for k in now if k in saved and k not in RESUMABLE_FIELDS and plain(saved[k]) != plain(now[k])]
