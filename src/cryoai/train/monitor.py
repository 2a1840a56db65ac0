"""The convergence monitor: how good the map is while training, without the truth, and a better
map for the volume when it finds one.

Every check (``Trainer.fit``: every ``volume_every`` steps) predicts the poses of a fixed subset
(the warm-start subset when there is one) with the encoder and refines them against the current
volume (``finish.predict``), then reconstructs its two random halves from those poses
(``half_maps``) and records their FSC-0.143 resolution: the curve ``schedule.stop_reason``
watches for a plateau. The halves share one refinement, so the number is optimistic, not gold
standard; it is comparable between checks, which is what the schedule needs.

When a check's half-set resolution beats, by more than ``tolerance_px``, that of the map last
loaded into the volume (at first the warm start's, measured the same way), the direct
reconstruction of the whole subset from the refined poses is loaded into the volume and training
continues from it; the refined poses then replace the subset's warm-start poses in the encoder's
supervision (``supervision.subset_pose_loss``), so the encoder is distilled towards them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from cryoai.data.training_data import TrainingData
from cryoai.train.finish import PoseSettings, Poses, load_reconstruction, predict
from cryoai.train.half_maps import half_maps


@dataclass
class CheckResult:
    poses: Poses  # refined poses of the subset (RELION matrices, origins in Å)
    resolution_px: float  # half-set FSC 0.143 (optimistic: one refinement)
    resolution_A: float
    loaded: bool  # the subset's reconstruction replaced the volume
    seconds: float
    predict_seconds: float  # of which the poses


@dataclass
class Monitor:
    """The fixed subset ``rows`` (sorted), the half-set resolution of each check (``history``,
    pixels), that of the map last loaded into the volume (``loaded_px``) and the duration of the
    last check (``seconds``); with ``load_maps`` False it only records. The state a checkpoint keeps."""

    rows: np.ndarray
    seed: int = 0
    tolerance_px: float = 0.05
    load_maps: bool = True  # False: record only (no warm start, so no map to beat)
    history: list[float] = field(default_factory=list)
    loaded_px: float = math.inf
    seconds: float = 0.0

    def state(self) -> dict:
        return {"rows": self.rows, "history": list(self.history), "loaded_px": self.loaded_px, "seconds": self.seconds}

    def load_state(self, state: dict) -> None:
        self.rows, self.history = np.asarray(state["rows"]), list(state["history"])
        self.loaded_px, self.seconds = float(state["loaded_px"]), float(state["seconds"])

    def measure_loaded(self, data: TrainingData, poses: Poses, oversample: int, workers: int = 0) -> float:
        """Record the half-set resolution of the map reconstructed from the subset at ``poses``
        (e.g. the warm start's), the one a later check must beat; returns it (pixels)."""
        self.loaded_px = float(half_maps(data, self.rows, poses[0], poses[1], oversample, self.seed, workers).resolution_px)
        return self.loaded_px

    def check(self, encoder, volume, data: TrainingData, how: PoseSettings) -> CheckResult:
        """One check (module docstring): poses, half-set resolution, and the volume replaced by the
        subset's reconstruction if that is better than the map loaded before."""
        t0 = time.time()
        rot, origin = predict(encoder, volume, data, self.rows, how)
        t_predict = time.time() - t0
        halves = half_maps(data, self.rows, rot, origin, volume.oversample, self.seed, how.workers)
        self.history.append(float(halves.resolution_px))
        loaded = bool(self.load_maps and halves.resolution_px < self.loaded_px - self.tolerance_px)
        if loaded:
            load_reconstruction(volume, data, self.rows, (rot, origin), how)
            self.loaded_px = float(halves.resolution_px)
        self.seconds = time.time() - t0
        return CheckResult((rot, origin), halves.resolution_px, halves.resolution_A, loaded, self.seconds, t_predict)
