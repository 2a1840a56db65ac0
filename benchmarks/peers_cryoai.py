"""cryoai in benchmarks/peers.py: the row of a finished cryoai run (wall time from its log.txt, a
time-to-resolution curve from its volumes/step_*.mrc), its extrapolation to another N, and a new
training run on a subset."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from pathlib import Path

from peers_data import Dataset
from peers_env import run_limited
from peers_score import Row, score


def cryoai_row(run: Path, ds: Dataset, workdir: Path) -> Row:
    """A finished cryoai run: wall = first to last line of log.txt; FSC of volume.mrc and of each
    volumes/step_*.mrc at its elapsed_s (metrics.jsonl) for the time-to-resolution curve."""
    stamps = [datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S").timestamp()
              for line in (run / "log.txt").read_text().splitlines() if re.match(r"\d{4}-\d\d-\d\d ", line)]
    n = int(re.search(r"^n_particles: (\d+)", (run / "config.yaml").read_text(), re.M).group(1))
    row = Row("cryoai", ds.name, n, wall_s=stamps[-1] - stamps[0],
              status="finished", notes=f" run {run};")
    elapsed = {m["step"]: m["elapsed_s"] for m in map(json.loads, open(run / "metrics.jsonl")) if "elapsed_s" in m}
    for vol in sorted((run / "volumes").glob("step_*.mrc")):
        step = int(vol.stem.split("_")[1])
        r = Row("cryoai", ds.name, row.n)
        score(r, ds, vol, workdir)
        row.curve.append((elapsed.get(step, float("nan")), r.res_px))
    score(row, ds, run / "volume.mrc", workdir)
    row.per_image_s = row.wall_s / row.n
    train_s = max(elapsed.values(), default=0.0)  # the training steps: a fixed number (config `steps`), whatever N
    row.per_epoch_s = {"training (fixed steps)": train_s, "finish (all particles)": row.wall_s - train_s}
    return row


def extrapolate_cryoai(row: Row, n_to: int) -> Row:
    """cryoai at `n_to` images: training is a fixed number of steps, the finish (refinement rounds,
    the pass over every particle) is taken as ∝ N, an upper bound (part of it works on a fixed subset)."""
    train_s, finish_s = row.per_epoch_s["training (fixed steps)"], row.per_epoch_s["finish (all particles)"]
    wall = train_s + finish_s * n_to / row.n
    return Row(row.method, row.dataset, n_to, wall_s=wall, per_image_s=wall / n_to, status="extrapolated",
               notes=f"T = training {train_s:.0f} s + {n_to}/{row.n} × finish {finish_s:.0f} s; resolution not measured at this N")


def run_cryoai(ds: Dataset, sub: Path, n: int, workdir: Path, limit_s: float) -> Row:
    """Train cryoai with default settings on the subset, then score it like an existing run."""
    run = workdir / "run"
    cmd = [sys.executable, "-m", "cryoai.cli.main", "train", str(sub / "particles.star"), "-o", str(run), "--quiet",
           "--max-minutes", str(limit_s / 60)]
    run_limited(cmd, workdir / "log.txt", limit_s + 300)
    return cryoai_row(run, ds, workdir)
