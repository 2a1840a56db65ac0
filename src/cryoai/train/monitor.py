"""The convergence monitor: how good the map is while training, without the truth, and a better
map for the volume when it finds one.

Every check (``Trainer.fit``: every ``volume_every`` steps) predicts the poses of a fixed subset
(the warm-start subset when there is one) with the encoder and refines them against the current
volume (``finish.predict``), then reconstructs its two random halves from those poses
(``half_maps``) and records their FSC-0.143 resolution: the curve ``schedule.stop_reason``
watches for a plateau. The halves share one refinement, so the number is optimistic, not gold
standard; it is comparable between checks, which is what the schedule needs.

The subset's poses are refined from its best so far (``check``'s ``start``); the encoder is
distilled towards them, not trusted for them. When a check's half-set resolution beats, by more than ``tolerance_px``, that of the map last
loaded into the volume (at first the warm start's, ``measure_loaded``), the direct
reconstruction of the whole subset from the refined poses is loaded into the volume and training
continues from it; the refined poses then replace the subset's warm-start poses in the encoder's
supervision (``supervision.subset_pose_loss``), so the encoder is distilled towards them.
Under a point group (``train --symmetry``) that reconstruction is symmetrised over the group in
RELION's orientation, the frame the warm start put the map in, and the errors are modulo the group.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from cryoai.data.training_data import TrainingData
from cryoai.train import distributed as dist
from cryoai.train.finish import PoseSettings, Poses, final_subset, load_reconstruction, predict
from cryoai.train.half_maps import half_maps
from cryoai.train.time_limit import FinishCosts, check_fits


@dataclass
class CheckResult:
    poses: Poses  # refined poses of the subset (RELION matrices, origins in Å)
    resolution_px: float  # half-set FSC 0.143 (optimistic: one refinement)
    resolution_A: float
    loaded: bool  # the subset's reconstruction replaced the volume
    seconds: float
    predict_seconds: float  # of which the poses
    errors: dict | None = None  # against the input's poses, when it has them (``evaluate_poses``)

    def record(self, step: int, elapsed_s: float) -> dict:
        """The check's line of metrics.jsonl."""
        record = {"step": step, "stage": "monitor", "elapsed_s": elapsed_s, "half_resolution_px": self.resolution_px,
                  "half_resolution_A": self.resolution_A, "loaded": self.loaded, "seconds": self.seconds}
        if self.errors:
            record.update(rot_median_deg=self.errors["rot_median_deg"], frac_within_10deg=self.errors["frac_within_10deg"])
        return record

    def summary(self) -> str:
        """The check in words, for the log."""
        return (f"half-set resolution {self.resolution_px:.2f} px ({self.resolution_A:.1f} Å) in {self.seconds:.0f} s"
                + ("; its map loaded into the volume" if self.loaded else "")
                + (f"; median error vs the input poses {self.errors['rot_median_deg']:.1f}°" if self.errors else ""))


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
        return {"rows": self.rows, "history": list(self.history), "loaded_px": self.loaded_px, "seconds": self.seconds,
                "load_maps": self.load_maps}

    @classmethod
    def from_state(cls, state: dict, seed: int, tolerance_px: float) -> Monitor:
        return cls(np.asarray(state["rows"]), seed, tolerance_px, state.get("load_maps", True), list(state["history"]),
                   float(state["loaded_px"]), float(state["seconds"]))

    def measure_loaded(self, data: TrainingData, poses: Poses, oversample: int, workers: int = 0) -> float:
        """Record the half-set resolution of the subset's map at ``poses`` (the warm start's): the
        one a check must beat to replace it (pixels)."""
        self.loaded_px = float(half_maps(data, self.rows, poses[0], poses[1], oversample, self.seed, workers).resolution_px)
        return self.loaded_px

    def fits(self, train_seconds: float, budget: float, costs: FinishCosts | None) -> bool:
        """Whether a check (as long as the last, the first estimated from the finish's ``costs``)
        fits in the training ``budget`` left (seconds; inf: no limit)."""
        guess = 0.0 if costs is None else len(self.rows) * (costs.predict_s + 3 * costs.reconstruct_s)
        return budget == math.inf or check_fits(train_seconds, budget, self.seconds, guess)

    def check(self, encoder, volume, data: TrainingData, how: PoseSettings, start: Poses | None = None,
              true_rotations: np.ndarray | None = None, symmetry: str = "C1") -> CheckResult:
        """One check (module docstring): poses, half-set resolution, and the volume replaced by the
        subset's reconstruction if that is better than the map loaded before; with every
        particle's ``true_rotations`` (simulated or published), the poses' errors too. With a
        point group ``symmetry``, the errors are modulo it (the map loaded is symmetrised by ``how.symmetry``).

        ``start``: the subset's best poses so far (the warm start's, then those of the last map
        loaded), refined again against the volume instead of the encoder's: early in training
        the encoder's are worse than the warm start's (a run at step 60 had 89° median error
        against 7.6°, and its map replaced the warm start's)."""
        t0 = time.time()
        how = replace(how, progress=False)  # no progress bar inside the training's
        rot, origin = predict(encoder, volume, data, self.rows, how, start=start)
        t_predict = time.time() - t0
        halves = half_maps(data, self.rows, rot, origin, volume.oversample, self.seed, how.workers)
        self.history.append(float(halves.resolution_px))
        loaded = bool(self.load_maps and halves.resolution_px < self.loaded_px - self.tolerance_px)
        if loaded:
            load_reconstruction(volume, data, self.rows, (rot, origin), how)
            self.loaded_px = float(halves.resolution_px)
        self.seconds = dist.from_main(time.time() - t0)  # under torchrun, rank 0's clock decides for all
        errors = None
        if true_rotations is not None:
            from cryoai.eval.poses import evaluate_poses

            errors = evaluate_poses(rot, true_rotations[self.rows], symmetry=symmetry)
        return CheckResult((rot, origin), float(halves.resolution_px), float(halves.resolution_A), loaded,
                           self.seconds, t_predict, errors)


def start_monitor(subset: np.ndarray, n: int, size: int, seed: int, tolerance_px: float) -> Monitor | None:
    """The monitor of a run on ``n`` particles (None when ``size`` is 0): on the warm-start
    ``subset`` (its map to beat measured by the caller: ``measure_loaded``); without a warm start (empty subset), on
    ``size`` random particles, recording only (no map to beat)."""
    if size <= 0:
        return None
    if len(subset) == 0:
        return Monitor(final_subset(n, size, seed + 1), seed, tolerance_px, load_maps=False)
    return Monitor(subset, seed, tolerance_px)
