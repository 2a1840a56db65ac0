"""The final check's verdicts on runs that succeed and runs that fail: what set its thresholds.

Simulates 2000-particle sets (box 64, 2.5 Å/px, SNR 0.1, CTF, shifts σ 5 Å: the built-in phantom
and 4AKE; and pure noise, SNR 1e-6), trains each with `cryoai train` (one thread), then tabulates
OUT/verdict.json beside the true median pose error (`cryoai evaluate`-style registration):
  good     --steps 1500 (phantom, 4AKE)
  short    --steps 300 (an undertrained encoder: most poses far off)
  scratch  --no-warm-start --steps 300 (phantom)
  noise    --steps 300 on pure noise
and, for each run, the map checks on the same particles at random poses. A run is wrong when its
median pose error exceeds 20°; the check should warn exactly on those.

Usage: python benchmarks/verdicts.py [--out bench_verdicts] [--n 2000] [--runs good,short,scratch,noise]
Takes about 1.5 h on one free core (README, "What to check in the report", holds the numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ADK = Path(__file__).resolve().parents[2] / "shared" / "data" / "maps_models" / "adk_open_4AKE.pdb"
RUNS = {"good": [("phantom", ["--steps", "1500"]), ("4ake", ["--steps", "1500"])],
        "short": [("phantom", ["--steps", "300"]), ("4ake", ["--steps", "300"])],
        "scratch": [("phantom", ["--steps", "300", "--no-warm-start"])],
        "noise": [("noise", ["--steps", "300"])]}


def cryoai(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "cryoai.cli.main", *args], check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})


def simulate(name: str, out: Path, n: int) -> Path:
    folder = out / f"sim_{name}"
    if not (folder / "particles.star").is_file():
        source = ["--model", str(ADK)] if name == "4ake" else []
        snr = "1e-6" if name == "noise" else "0.1"
        cryoai("simulate", *source, "--n", str(n), "--box", "64", "--apix", "2.5", "--snr", snr,
               "--shift-std-A", "5", "--seed", "3", "-o", str(folder))
    return folder / "particles.star"


def random_pose_checks(star: Path, run: Path) -> dict:
    """The map checks of the particles of ``star`` reconstructed at random poses (the run's origins)."""
    from cryoai.data.particles import load_particles
    from cryoai.data.training_data import TrainingData
    from cryoai.eval import diagnostics as dg
    from cryoai.geometry.rotations import random_rotations
    from cryoai.train.half_maps import half_maps

    particles = load_particles(star)
    data = TrainingData(particles, 64, 32)
    rot = random_rotations(len(particles), np.random.default_rng(0))
    origins = load_particles(run / "particles.star", datadir=str(star.parent)).origins_A
    h = half_maps(data, np.arange(len(particles)), rot, origins)
    checks = [dg.half_map_resolution(h.resolution_px, 64), dg.anisotropic_agreement(*h.maps), dg.view_coverage(rot)]
    return {c.name: c.value for c in checks} | {"verdict": dg.overall(checks)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_verdicts")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--runs", default="good,short,scratch,noise")
    args = p.parse_args()
    from cryoai.data.particles import load_particles
    from cryoai.eval.poses import evaluate_poses

    out = Path(args.out)
    out.mkdir(exist_ok=True)
    for kind in args.runs.split(","):
        for name, options in RUNS[kind]:
            star = simulate(name, out, args.n)
            run = out / f"{kind}_{name}"
            if not (run / "verdict.json").is_file():
                cryoai("train", str(star), "-o", str(run), "--quiet", "--device", "cpu", *options)
            verdict = json.loads((run / "verdict.json").read_text())
            error = evaluate_poses(load_particles(run / "particles.star", datadir=str(star.parent)).rotations,
                                   load_particles(star).rotations)["rot_median_deg"]
            values = {d["name"]: round(d["value"], 3) for d in verdict["diagnostics"]}
            print(f"{kind}_{name}: true median error {error:.1f}°, {verdict['verdict']}, {values}", flush=True)
            print(f"{kind}_{name} at random poses: {random_pose_checks(star, run)}", flush=True)


if __name__ == "__main__":
    main()
