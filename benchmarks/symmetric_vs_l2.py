"""The symmetric loss against plain L2: how often each escapes the mirror-symmetric minimum.

For each seed, the same simulated set (built-in phantom unless --model/--map, CTF, shifts σ = 1 px)
is reconstructed in {symmetric, l2} × the configurations asked for:
  scratch   no warm start: the encoder and the voxel volume learn from scratch
  paper     no warm start, FourierNet volume: the closest to cryoAI's published method (cryoai
            still marches the loss radius and refines the poses after training)
  default   cryoai's default (warm start first, voxel volume)
A run *escapes* when the median rotation error of its final poses (registered to the truth,
either hand) is below 20°. Prints one row per run and a summary table.

Usage: python benchmarks/symmetric_vs_l2.py [--seeds 5] [--n 1500] [--box 32] [--apix 5]
       [--steps 700] [--out bench_sym] [--configs scratch,default]
Run it alone on the machine; each run uses one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = {"scratch": ["--no-warm-start"], "paper": ["--no-warm-start", "--volume", "fouriernet"], "default": []}


def cryoai(*args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "cryoai.cli.main", *args], check=True, text=True,
                         capture_output=True, env=env)
    return res.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--n", type=int, default=1500)
    p.add_argument("--box", type=int, default=32)
    p.add_argument("--apix", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=700)
    p.add_argument("--configs", default="scratch,default", help=", ".join(CONFIGS))
    p.add_argument("--source", nargs="*", default=[], help="e.g. --source --model path.pdb (default: built-in phantom)")
    p.add_argument("--out", default="bench_sym")
    args = p.parse_args()
    out = Path(args.out)
    results = []
    print("| config | loss | seed | median rot err (deg) | within 10 deg | escaped | minutes |")
    print("|---|---|---|---|---|---|---|")
    for seed in range(args.seeds):
        data = out / f"data_s{seed}"
        if not (data / "particles.star").is_file():
            cryoai("simulate", *args.source, "--n", str(args.n), "--box", str(args.box), "--apix", str(args.apix),
                   "--shift-std-A", str(args.apix), "--seed", str(seed), "-o", str(data))
        for config in args.configs.split(","):
            for loss in ("symmetric", "l2"):
                run = out / f"{config}_{loss}_s{seed}"
                t0 = time.time()
                cryoai("train", str(data / "particles.star"), "-o", str(run), "--steps", str(args.steps),
                       "--loss", loss, "--seed", str(seed), "--quiet", *CONFIGS[config])
                minutes = (time.time() - t0) / 60
                e = json.loads(cryoai("evaluate", str(run / "particles.star"), "--truth", str(data / "particles.star"),
                                      "--json").strip().splitlines()[-1])
                escaped = e["rot_median_deg"] < 20
                results.append((config, loss, escaped, e["rot_median_deg"]))
                print(f"| {config} | {loss} | {seed} | {e['rot_median_deg']:.1f} | {e['frac_within_10deg']:.2f} | "
                      f"{'yes' if escaped else 'no'} | {minutes:.1f} |", flush=True)
    print("\n| config | loss | escaped | median of median rot err (deg) |")
    print("|---|---|---|---|")
    for config in args.configs.split(","):
        for loss in ("symmetric", "l2"):
            rows = [r for r in results if r[0] == config and r[1] == loss]
            errs = sorted(r[3] for r in rows)
            print(f"| {config} | {loss} | {sum(r[2] for r in rows)}/{len(rows)} | {errs[len(errs) // 2]:.1f} |")


if __name__ == "__main__":
    main()
