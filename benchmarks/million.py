"""Scale: peak memory and wall time of loading, predicting and training on a 1,000,000-particle STAR.

The STAR is RELION 3.1 and points cyclically at the rows of a small simulated stack (10,000
images at L=64, 2.5 Å/px, SNR 0.1), so the images are real but the disk cost is small. Each
stage runs in a fresh subprocess; its peak RSS is that process's ``ru_maxrss`` (``os.wait4``),
its wall time includes start-up (imports, reading the STAR).

Stages:
  load            ``load_particles`` of the whole STAR
  predict         ``cryoai predict`` (encoder + local refinement, the default) of ``--refine-n`` rows
  predict-norefine  the same with ``--no-refine`` (encoder only) of ``--predict-n`` rows
  predict-io      ``cryoai predict`` of all ``--n`` rows with the pose computation replaced by
                  random poses: the memory and time of everything that grows with N (reading
                  the STAR, normalisation statistics, pose arrays, writing the output STAR)
  train           ``cryoai train`` machinery on the whole STAR for ``--train-steps`` steps
                  (warm start + steps + checkpoint: ``Trainer.fit(finish=False)``)
  finish          the finish of ``cryoai train`` (``train/finish.final_map_and_poses``: rounds of
                  reconstruct + refine, predict every particle, the final map; then write the map
                  and the STAR) on the first ``--finish-n`` rows, from the ``run50`` checkpoint
  finish-io       the finish's steps (``train/finish.py``) on all ``--n`` rows with its pose
                  predictions and reconstructions computed for real on 2,000 rows only and tiled
                  over the rest: the memory of the finish at N (everything N-sized) without its
                  hours of compute
  preprocess      ``cryoai preprocess`` of the whole STAR into a float16 cache (box 64)
  train-cache     as ``train`` but reading images from that cache
  batches         ``TrainingData.batch`` alone, 400 random batches of 64: from the stacks, then from the
                  cache twice (the first pass may read from disk: the cache of 10⁶ images is 8 GB
                  while the 10k-image stack the STAR cycles over is 160 MB and stays in page cache)
Throughput is extrapolated linearly where a stage ran on fewer rows than ``--n`` (said so).
All processes run with one thread (OMP_NUM_THREADS=1, torch.set_num_threads(1)).

Targets: peak RSS ≤ 2 GB for every stage at N = 10⁶; predict ≥ 500 images/s at L=64, one CPU thread.
Measured (2-core x86_64 VM shared with another job, one thread, 2026-11-25, commit after a388be1):

| stage | N | wall s | images/s | peak RSS MiB | before this branch |
|---|---|---|---|---|---|
| load | 1,000,000 | 6.3 | - | 878 | 1300 MiB |
| predict-io (memory probe) | 1,000,000 | 15.3 | - | 1164 | 1681 MiB |
| predict --no-refine | 200,000 | 261 | 765 | 926 | (no option) |
| predict (with refinement) | 20,000 | 83 | 240 | 1007 | 211 images/s |
| train, 50 steps (warm start 28 s) | 1,000,000 | 43 | 418 | 1317 | |
| finish (Trainer.finish) | 5,000 | 115 | 43 | 1482 | |
| finish-io (memory probe) | 1,000,000 | 63 | - | 1459 | |
| preprocess | 1,000,000 | 43 | 23,068 | 991 | 352 s at first |
| train --cache, 50 steps | 1,000,000 | 44 | 390 | 1128 | |
| batches: stacks / cache | 1,000,000 | 13 | 15,407 / 14,923 | 959 | |

Extrapolated to 10⁶: predict without refinement ~22 min, with refinement ~70 min, and the
finish of `cryoai train` (5 passes of refinement, 4 reconstructions) ~6.4 h: the refinement
(train/refine.py) is what misses the 500 images/s target.

Usage: OMP_NUM_THREADS=1 nice -n 10 python benchmarks/million.py --work /tmp/million
           [--n 1000000] [--predict-n 200000] [--train-steps 50] [--finish-n 20000] [--stages load,predict,...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
STAGES = ("load", "predict-io", "predict-norefine", "predict", "train", "finish", "finish-io", "preprocess",
          "train-cache", "batches")


def run_measured(cmd: list[str], log: Path) -> tuple[float, float, int]:
    """Run ``cmd`` in a fresh process → (wall s, peak RSS MiB of that process tree, exit code)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, proc.returncode


def cryoai(*args: str) -> list[str]:
    return [sys.executable, "-m", "cryoai.cli.main", *args]


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def star_rows(star: Path) -> tuple[list[str], list[str]]:
    """(header lines up to and including the particle loop's column names, particle row lines)."""
    lines = star.read_text().splitlines()
    start = lines.index("data_particles")
    i = start + 1
    while not lines[i].startswith("_rln"):
        i += 1
    while i < len(lines) and lines[i].startswith("_rln"):
        i += 1
    header, rows = lines[:i], [line for line in lines[i:] if line.strip()]
    return header, rows


def build_star(source: Path, n: int, out: Path) -> None:
    """RELION 3.1 STAR of ``n`` particles cycling over ``source``'s rows (same stack, same folder)."""
    if out.is_file() and sum(1 for _ in open(out)) >= n:
        return
    header, rows = star_rows(source)
    block = "\n".join(rows) + "\n"
    tmp = out.with_suffix(".tmp.star")
    with open(tmp, "w") as f:
        f.write("\n".join(header) + "\n")
        full, rest = divmod(n, len(rows))
        for _ in range(full):
            f.write(block)
        if rest:
            f.write("\n".join(rows[:rest]) + "\n")
    os.replace(tmp, out)


TRAIN_DRIVER = """
import sys, time, resource, torch
torch.set_num_threads(1)
from cryoai.data.particles import load_particles
from cryoai.train.config import default_config
from cryoai.train.run_dir import RunDir
from cryoai.train.trainer import Trainer
star, out, steps, cache = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
particles = load_particles(star)
cfg = default_config(particles.box, "cpu")
cfg.steps = steps
if cache != "-":
    from cryoai.data.cache import attach_cache
    particles = attach_cache(particles, cache, cfg.train_box)
trainer = Trainer(particles, cfg, RunDir(out, quiet=True), progress=False)
t1 = time.perf_counter(); print(f"TIMING setup {t1 - t0:.2f} rss {rss():.0f}", flush=True)
trainer.fit(finish=False)
t2 = time.perf_counter(); print(f"TIMING fit {t2 - t1:.2f} rss {rss():.0f}", flush=True)
"""

FINISH_DRIVER = """
import sys, time, resource, numpy as np, torch
torch.set_num_threads(1)
from cryoai.data.particles import load_particles, write_particles_star
from cryoai.io.mrc import write_map
from cryoai.models.volume_map import volume_to_map
from cryoai.train import finish
from cryoai.data.training_data import TrainingData
from cryoai.train.checkpoint import load_checkpoint
from cryoai.train.config import TrainConfig
from cryoai.train.schedule import loss_radius
from cryoai.train.trainer import build_models
star, out, trained, n_rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
state = load_checkpoint(trained + "/checkpoints/last.pt")
cfg = TrainConfig(**{k: v for k, v in state["config"].items() if k in TrainConfig.__dataclass_fields__})
encoder, volume = build_models(cfg, "cpu")
encoder.load_state_dict(state["encoder"])
volume.load_state_dict(state["volume"])
particles = load_particles(star)
if n_rows > 0:  # finish: the whole finish on the first n_rows particles
    particles = particles.subset(range(n_rows))
data = TrainingData(particles, cfg.train_box, cfg.encoder_box, invert=cfg.invert, seed=cfg.seed)
how = finish.PoseSettings(loss_radius(cfg, state["position"]), cfg.loss == "symmetric")
t1 = time.perf_counter(); print(f"TIMING setup {t1 - t0:.2f} rss {rss():.0f}", flush=True)
if n_rows > 0:
    rot, origin = finish.final_map_and_poses(encoder, volume, data, how, cfg.final_subset, cfg.final_iterations, cfg.seed)
else:  # finish-io: every N-sized step at N, the pose computations and reconstructions on k rows
    n, k = len(particles), 2000
    subset = finish.final_subset(n, cfg.final_subset, cfg.seed)
    (rot_s, origin_s), _ = finish.refine_rounds(encoder, volume, data, subset[:k], cfg.final_iterations, how)
    rot_k, origin_k = finish.predict(encoder, volume, data, np.arange(k), how)  # the pass over all, on k rows
    reps = -(-n // k)
    rot, origin = np.tile(rot_k, (reps, 1, 1))[:n], np.tile(origin_k, (reps, 1))[:n]
    rot[subset[:k]], origin[subset[:k]] = rot_s, origin_s
    finish.load_reconstruction(volume, data, np.arange(k), (rot[:k], origin[:k]), how)
write_map(out + "_volume.mrc", volume_to_map(volume, cfg.train_box).numpy(), data.apix)
write_particles_star(out + "_particles.star", particles, rot, origin)
t2 = time.perf_counter(); print(f"TIMING finish {t2 - t1:.2f} n {len(rot)} rss {rss():.0f}", flush=True)
"""

PREDICT_IO_DRIVER = """
import sys, numpy as np
import cryoai.train.predict as predict
from cryoai.cli.main import main
from cryoai.geometry.rotations import random_rotations

def fake(encoder, volume, data, *args, **kwargs):
    n = len(data.particles)
    data.batch(np.arange(min(n, 256)))  # one real batch: image reading is exercised
    return random_rotations(n, np.random.default_rng(0)), np.zeros((n, 2))

predict.predict_poses = fake
sys.exit(main(["predict", *sys.argv[1:]]))
"""

BATCH_DRIVER = """
import sys, time, numpy as np, torch
torch.set_num_threads(1)
from cryoai.data.particles import load_particles
from cryoai.data.cache import attach_cache
from cryoai.data.training_data import TrainingData
p = load_particles(sys.argv[1])
rng = np.random.default_rng(0)
rows = [rng.integers(0, len(p), 64) for _ in range(400)]
cached = attach_cache(p, sys.argv[2], 64)
for name, parts in (("stacks", p), ("cache-first-pass", cached), ("cache-again", cached)):
    data = TrainingData(parts, 64, 32)
    t = time.perf_counter()
    for r in rows:
        data.batch(r)
    print(f"TIMING batch-{name} {len(rows) * 64 / (time.perf_counter() - t):.0f} img/s", flush=True)
"""

LOAD_DRIVER = """
import sys, time
from cryoai.data.particles import load_particles
t0 = time.perf_counter()
p = load_particles(sys.argv[1])
print(f"TIMING load {time.perf_counter() - t0:.2f} n {len(p)}", flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/million", help="working folder (kept: reruns reuse the data and run)")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--predict-n", type=int, default=200_000,
                    help="rows predicted without refinement (extrapolated to --n)")
    ap.add_argument("--refine-n", type=int, default=20_000,
                    help="rows predicted with refinement (the slow default of cryoai predict; extrapolated)")
    ap.add_argument("--train-steps", type=int, default=50)
    ap.add_argument("--finish-n", type=int, default=5_000, help="rows for the finish stage (extrapolated)")
    ap.add_argument("--stages", default=",".join(STAGES))
    args = ap.parse_args()
    stages = args.stages.split(",")
    assert set(stages) <= set(STAGES), f"stages are {STAGES}"
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sim, run = work / "sim10k", work / "run50"
    if not (sim / "particles.star").is_file():
        print("simulating 10,000 particles ...", flush=True)
        subprocess.run(cryoai("simulate", "--n", "10000", "--box", "64", "--apix", "2.5", "--snr", "0.1",
                              "--shift-std-A", "3", "-o", str(sim)), check=True,
                       env=dict(os.environ, PYTHONPATH=str(SRC)), stdout=subprocess.DEVNULL)
    if not (run / "checkpoints" / "last.pt").is_file():
        print("training a tiny run (50 steps) on the 10k set ...", flush=True)
        subprocess.run(cryoai("train", str(sim / "particles.star"), "-o", str(run), "--steps", "50", "--device", "cpu",
                              "--quiet"), check=True, env=dict(os.environ, PYTHONPATH=str(SRC)))
    big = sim / f"particles_{args.n}.star"
    build_star(sim / "particles.star", args.n, big)
    pred_stars = {}
    for n_rows in {min(args.predict_n, args.n), min(args.refine_n, args.n)}:
        pred_stars[n_rows] = big if n_rows == args.n else sim / f"particles_{n_rows}.star"
        build_star(sim / "particles.star", n_rows, pred_stars[n_rows])
    cache = work / "cache64"

    results = []
    for stage in stages:
        log = work / f"{stage}.log"
        n_done = args.n
        if stage == "load":
            cmd = python(LOAD_DRIVER, str(big))
        elif stage == "predict-io":
            cmd = python(PREDICT_IO_DRIVER, str(run), str(big), "-o", str(work / f"{stage}.star"), "--quiet",
                         "--device", "cpu")
        elif stage in ("predict", "predict-norefine"):
            n_done = min(args.predict_n if stage == "predict-norefine" else args.refine_n, args.n)
            extra = ["--no-refine"] if stage == "predict-norefine" else []
            cmd = cryoai("predict", str(run), str(pred_stars[n_done]), "-o", str(work / f"{stage}.star"), "--quiet",
                         "--device", "cpu", *extra)
        elif stage in ("train", "train-cache"):
            cmd = python(TRAIN_DRIVER, str(big), str(work / f"run_{stage}"), str(args.train_steps),
                         str(cache) if stage == "train-cache" else "-")
        elif stage == "finish-io":
            cmd = python(FINISH_DRIVER, str(big), str(work / "finish_io"), str(run), "0")
        elif stage == "finish":
            n_done = min(args.finish_n, args.n)
            cmd = python(FINISH_DRIVER, str(big), str(work / "finish"), str(run), str(n_done))
        elif stage == "batches":
            cmd = python(BATCH_DRIVER, str(big), str(cache))
        else:  # preprocess
            cmd = cryoai("preprocess", str(big), "-o", str(cache), "--quiet")
        shown = [cmd[0], "-c", "<driver>", *cmd[3:]] if cmd[1] == "-c" else cmd
        print(f"[{stage}] {' '.join(shown)} ...", flush=True)
        wall, peak, rc = run_measured(cmd, log)
        timings = [line for line in log.read_text().splitlines() if line.startswith("TIMING")]
        if rc != 0:
            print(f"  FAILED (exit {rc}); see {log}", flush=True)
            results.append((stage, n_done, wall, None, peak, "failed"))
            continue
        inner = " ".join(timings)
        if stage in ("train", "train-cache"):
            records = [json.loads(line) for line in open(work / f"run_{stage}" / "metrics.jsonl")]
            warm = sum(r.get("seconds", 0) for r in records if r.get("stage") == "warm_start")
            rate = records[-1]["images_per_s"]  # the last logging window: data steps only
            note = (f"{args.train_steps} steps of 64; images/s of the last {records[-1]['step'] - records[-2]['step']} "
                    f"steps (metrics.jsonl); warm start {warm:.0f} s; {inner}")
        elif stage == "batches":
            rate = float(timings[-1].split()[2])
            note = inner
        elif stage in ("predict-io", "finish-io"):
            rate, note = None, "memory probe (poses faked / computed on 2,000 rows); " + inner
        else:
            rate = n_done / wall
            note = inner
            if n_done < args.n:
                note += f"; ran {n_done} rows, {args.n} extrapolated: {args.n / rate:.0f} s"
        results.append((stage, n_done, wall, rate, peak, note))
        print(f"  {wall:.1f} s, {'-' if rate is None else f'{rate:.0f}'} images/s, peak RSS {peak:.0f} MiB  {note}",
              flush=True)

    print("\nOne CPU thread (OMP_NUM_THREADS=1), L=64 (train box 64, encoder box 32), "
          f"{os.uname().machine}; wall time includes process start-up.\n")
    print("| stage | N | wall s | images/s | peak RSS MiB | notes |")
    print("|---|---|---|---|---|---|")
    for stage, n, wall, rate, peak, note in results:
        print(f"| {stage} | {n:,} | {wall:.1f} | {'-' if rate is None else f'{rate:.0f}'} | {peak:.0f} | {note} |")


if __name__ == "__main__":
    main()
