"""Read-ahead data loading (``--workers K``): training and prediction throughput against K.

For each K, ``cryoai train DATA --steps S --workers K`` (the training process limited to
``--threads`` threads), then ``cryoai predict`` of that run on ``--predict-data`` (default DATA)
with the same K. Prints training images/s (median over the run's log intervals, from its
metrics.jsonl) and prediction images/s (as `cryoai predict` prints it, start-up included); and,
for scale, how fast one thread prepares batches alone (what the workers take off the main process).
Worker processes are extra processes: on a machine with C cores, K ≤ C − threads leaves each of
them a core; beyond that they compete with the training process.

Usage: python benchmarks/workers_speed.py --data particles.star [--predict-data big.star]
       [--workers 0,1] [--steps 400] [--threads 1] [--out /tmp/workers_speed]
Run it alone on the machine: timings mean nothing with other jobs beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cryoai.data.particles import load_particles
from cryoai.data.training_data import TrainingData
from cryoai.train.config import default_config


def cryoai(*args: str, threads: int) -> str:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-m", "cryoai", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"cryoai {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def loading_rate(star: str, n_batches: int = 100) -> tuple[float, int]:
    """Images/s of batch preparation alone (read, crop, normalise: what a worker does), in this
    process on one thread, for random batches of the default size; and that size."""
    torch.set_num_threads(1)
    particles = load_particles(star)
    cfg = default_config(particles.box, "cpu")
    data = TrainingData(particles, cfg.train_box, cfg.encoder_box)
    rng = np.random.default_rng(0)
    data.batch(rng.choice(len(particles), cfg.batch_size, replace=False))  # warm-up
    t0 = time.perf_counter()
    for _ in range(n_batches):
        data.batch(rng.choice(len(particles), cfg.batch_size, replace=False))
    return n_batches * cfg.batch_size / (time.perf_counter() - t0), cfg.batch_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="particles to train on (.star)")
    p.add_argument("--predict-data", help="particles to predict (default: --data)")
    p.add_argument("--workers", default="0,1", help="comma-separated K values")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the training/predicting process")
    p.add_argument("--out", default="/tmp/workers_speed")
    args = p.parse_args()
    out = Path(args.out)
    rows = []
    for k in [int(v) for v in args.workers.split(",")]:
        run = out / f"workers{k}"
        cryoai("train", args.data, "-o", str(run), "--steps", str(args.steps), "--workers", str(k), "--quiet",
               threads=args.threads)
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        rates = [m["images_per_s"] for m in metrics if "images_per_s" in m]
        printed = cryoai("predict", str(run), args.predict_data or args.data, "-o", str(run / "predicted.star"),
                         "--workers", str(k), "--quiet", threads=args.threads)
        predict_rate = float(re.search(r"\(([\d.]+) images/s", printed).group(1))
        rows.append((k, float(np.median(rates)), len(rates), predict_rate))
    load, batch_size = loading_rate(args.data)
    print(f"\n{os.cpu_count()} cores; training/predicting process on {args.threads} thread(s); {args.steps} steps")
    print(f"batch preparation alone (one thread, batches of {batch_size}): {load:.0f} images/s\n")
    print("| workers | train images/s (median of log intervals) | intervals | predict images/s |")
    print("|---|---|---|---|")
    for k, rate, n, pred in rows:
        print(f"| {k} | {rate:.0f} | {n} | {pred:.0f} |")


if __name__ == "__main__":
    main()
