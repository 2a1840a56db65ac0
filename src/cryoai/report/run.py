"""Read a training run folder (``cryoai train -o OUT``) into one ``Run`` for the report.

Everything but ``config.yaml`` may be missing (a run still warming up, or one stopped early):
absent parts come back as None or empty lists and the report leaves out what needs them.
Comparisons with a ground truth (poses from the input STAR, a truth map) live here too.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from cryoai.errors import InputError

log = logging.getLogger(__name__)

MAX_POSE_PARTICLES = 5000  # pose errors are measured on at most this many particles


@dataclass
class Run:
    """What a run folder holds. ``metrics`` excludes the warm-start line (``warm_start_s``)."""

    path: Path
    info: dict  # config.yaml (cryoai_version, particles, n_particles, box, apix, device, …)
    config: dict  # its "config" section (TrainConfig fields)
    metrics: list[dict]
    warm_start_s: float | None
    volume_path: Path | None  # volume.mrc, else the latest snapshot
    snapshots: list[tuple[int, Path]]  # (step, volumes/step_NNNNNN.mrc), by step
    poses: object | None  # ParticleSet of OUT/particles.star
    input: object | None = None  # ParticleSet of the training input (config ``particles``)
    verdict: dict | None = None  # OUT/verdict.json: the final check (train/final_check.py)
    notes: list[str] = field(default_factory=list)  # what could not be read, for the report

    @property
    def final(self) -> bool:
        return (self.path / "volume.mrc").is_file()

    def last(self, key: str):
        """The last metrics value of ``key`` (None when never logged)."""
        for record in reversed(self.metrics):
            if record.get(key) is not None:
                return record[key]
        return None


def load_run(run_dir: str | Path) -> Run:
    """Read ``run_dir``; InputError naming it when it is not a cryoai training run folder."""
    path = Path(run_dir)
    cfg_path = path / "config.yaml"
    if not path.is_dir() or not cfg_path.is_file():
        raise InputError(f"{path}: not a cryoai run folder (no config.yaml); give the -o folder of `cryoai train`")
    try:
        info = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise InputError(f"{cfg_path}: not readable YAML ({e.__class__.__name__}); was it edited by hand?") from None
    if not isinstance(info, dict):
        raise InputError(f"{cfg_path}: not a cryoai run configuration; give the -o folder of `cryoai train`")
    metrics, warm = _read_metrics(path / "metrics.jsonl")
    snapshots = sorted((int(m.group(1)), p) for p in (path / "volumes").glob("step_*.mrc")
                       if (m := re.fullmatch(r"step_(\d+)\.mrc", p.name)))
    volume = path / "volume.mrc" if (path / "volume.mrc").is_file() else (snapshots[-1][1] if snapshots else None)
    run = Run(path=path, info=info, config=info.get("config") or {}, metrics=metrics, warm_start_s=warm,
              volume_path=volume, snapshots=snapshots, poses=None)
    if (path / "particles.star").is_file():
        run.poses = _load(path / "particles.star", info.get("apix"), run.notes)
    run.verdict = _read_verdict(path / "verdict.json", run.notes)
    src = input_star(run)
    run.input = _load(src, info.get("apix"), run.notes) if src is not None else None
    return run


def _read_metrics(path: Path) -> tuple[list[dict], float | None]:
    """metrics.jsonl → (training records by step, warm-start seconds). Skips a torn last line."""
    records, warm = [], None
    if not path.is_file():
        return records, warm
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        if record.get("stage") == "warm_start":
            warm = float(record.get("seconds", 0.0))
        elif "loss" in record and "step" in record:
            records.append(record)
    return records, warm


def _read_verdict(path: Path, notes: list[str]) -> dict | None:
    """OUT/verdict.json (None when absent: a run still training, or one from before the check)."""
    if not path.is_file():
        return None
    try:
        verdict = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        notes.append(f"could not read {path}: not JSON")
        return None
    if not isinstance(verdict, dict) or "verdict" not in verdict:
        notes.append(f"could not read {path}: not a cryoai verdict")
        return None
    return verdict


def _load(path: Path, apix, notes: list[str]):
    """A ParticleSet, or None with a note when the file cannot be read."""
    from cryoai.data.particles import load_particles

    try:
        return load_particles(path, apix=float(apix) if apix else None)
    except InputError as e:
        notes.append(f"could not read {path}: {e}")
        return None


def input_star(run: Run) -> Path | None:
    """The training input (config ``particles``), as given or relative to the run's parent."""
    name = run.info.get("particles")
    if not name:
        return None
    for candidate in (Path(name), run.path.parent / name, run.path / name):
        if candidate.is_file():
            return candidate
    run.notes.append(f"the input particles {name} are no longer there; no pose comparison")
    return None


def compare_poses(run: Run) -> dict | None:
    """Pose errors of OUT/particles.star against the input's poses, when it has any.

    Returns ``evaluate_poses``'s dict plus ``errors_deg`` (per particle, registered) and
    ``trans_errors_A`` (or None), on at most MAX_POSE_PARTICLES particles matched by image name.
    """
    from cryoai.data.matching import match_particles, particle_keys
    from cryoai.eval.poses import apply_registration, evaluate_poses, origin_errors_A
    from cryoai.geometry.rotations import geodesic_distance_deg

    pred, truth = run.poses, run.input
    if pred is None or truth is None or truth.rotations is None:
        return None
    src = truth.path
    try:
        ip, it = match_particles(particle_keys(pred), particle_keys(truth), pred.path, src)
    except InputError as e:
        run.notes.append(f"no pose comparison: {e}")
        return None
    if len(ip) > MAX_POSE_PARTICLES:
        keep = np.sort(np.random.default_rng(0).choice(len(ip), MAX_POSE_PARTICLES, replace=False))
        ip, it = ip[keep], it[keep]
    origins = pred.origins_A is not None and truth.origins_A is not None
    po, to = (pred.origins_A[ip], truth.origins_A[it]) if origins else (None, None)
    result = evaluate_poses(pred.rotations[ip], truth.rotations[it], po, to, truth.apix)
    registered = apply_registration(pred.rotations[ip], np.asarray(result["rotation"]), result["hand"])
    result["errors_deg"] = np.asarray(geodesic_distance_deg(registered, truth.rotations[it]))
    result["trans_errors_A"] = (origin_errors_A(pred.rotations[ip], po, to, np.asarray(result["map_offset_A"]))
                                if origins else None)
    result["source"] = src
    return result


def find_truth_map(run: Run, truth_map: str | None) -> Path | None:
    """``truth_map`` if given (InputError when missing), else truth.mrc beside the input STAR."""
    if truth_map is not None:
        if not Path(truth_map).is_file():
            raise InputError(f"{truth_map}: no such truth map; check the --truth path")
        return Path(truth_map)
    if run.input is not None and (run.input.path.parent / "truth.mrc").is_file():
        return run.input.path.parent / "truth.mrc"
    return None


def compare_truth_map(volume: np.ndarray, apix: float, truth_path: Path, poses: dict | None = None) -> dict:
    """FSC of the final map against the truth, after resampling the truth onto the map's grid
    and aligning the map onto it (rotation, shift, hand). ``compare_maps``'s dict + ``box``, ``apix``.

    With a good pose registration (``poses`` from :func:`compare_poses`: ≥ 50 % inliers, median
    error < 20°) its G and hand, which are the map's too, start a local alignment; otherwise a
    global search over rotations and both hands runs (seconds at box 24, minutes at box 128).
    """
    from cryoai.eval.compare import compare_maps
    from cryoai.io.mrc import read_map
    from cryoai.simulate import resample_map

    truth, truth_apix = read_map(truth_path)
    if not truth_apix > 0:
        truth_apix = apix
    truth = resample_map(truth, truth_apix, volume.shape[0], apix)
    init, global_search = None, True
    if poses is not None and poses["inlier_fraction"] >= 0.5 and poses["rot_median_deg"] < 20:
        init, global_search = (np.asarray(poses["rotation"]), poses["hand"]), False
    result = compare_maps(truth, volume, apix, align=True, init=init, global_search=global_search)
    result["search"] = "global" if global_search else "from the pose registration"
    result.update(box=volume.shape[0], apix=apix, path=truth_path)
    return result


def training_apix(run: Run) -> float | None:
    """Pixel size (Å) of the training box: apix · box / train_box."""
    apix, box, train_box = run.info.get("apix"), run.info.get("box"), run.config.get("train_box")
    if not (apix and box and train_box):
        return None
    return float(apix) * float(box) / float(train_box)


def loss_band_A(run: Run) -> list[float | None]:
    """Resolution (Å) of each record's loss radius (Fourier px of the training box)."""
    apix_t, L = training_apix(run), run.config.get("train_box")
    out: list[float | None] = []
    for record in run.metrics:
        r = record.get("radius")
        ok = apix_t and L and r and math.isfinite(r) and r > 0
        out.append(L * apix_t / r if ok else None)
    return out
