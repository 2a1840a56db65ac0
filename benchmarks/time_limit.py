"""Does `cryoai train --max-minutes X` end within X, and does the map improve while it trains?

For each limit: `cryoai train PARTICLES --max-minutes X` (default settings, one thread), its wall
time against the limit, why training stopped and how many finish rounds ran (from log.txt); then
for the longest run, a table over training time of the convergence monitor's checks
(metrics.jsonl: half-set resolution, median rotation error of the monitor subset) with the
FSC=0.5 against the truth of the map saved at that step (`--truth`, aligned first).
`--together` runs the limits side by side (each slows the others down: the estimates are then
wrong, which is what the limit must survive).

Usage: python benchmarks/time_limit.py sim/particles.star --truth sim/truth.mrc --limits 2,4 --out bench_tl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def train(particles: str, out: Path, minutes: float) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "cryoai.cli.main", "train", particles, "-o", str(out), "--max-minutes", str(minutes),
           "--quiet"]
    return subprocess.Popen(cmd, env=env)


def summary(out: Path) -> str:
    lines = (out / "log.txt").read_text().splitlines()
    keep = [line.split("  ", 1)[-1] for line in lines if "stopped" in line or line.split("  ", 1)[-1].startswith("finish:")]
    return "; ".join(keep)


def fsc_vs_truth(volume: Path, truth: str) -> float:
    from cryoai.eval.compare import compare_maps, load_map_pair

    ref, mov, apix = load_map_pair(truth, str(volume))
    res = compare_maps(ref, mov, apix, align=True)["res_0.5_px"]
    return float("inf") if res is None else float(res)


def monitor_table(out: Path, truth: str | None) -> list[str]:
    rows = ["| time (s) | step | half-set res. (px) | loaded | FSC=0.5 vs truth (px) | median rot. error (°) |",
            "|---|---|---|---|---|---|"]
    for line in open(out / "metrics.jsonl"):
        r = json.loads(line)
        if r.get("stage") not in ("warm_start", "monitor"):
            continue
        step = r["step"]
        vol = out / "volumes" / f"step_{step:06d}.mrc"
        truth_px = f"{fsc_vs_truth(vol, truth):.2f}" if truth and vol.is_file() else "–"
        rows.append(f"| {r.get('elapsed_s', r.get('seconds', 0)):.0f} | {step} | {r.get('half_resolution_px', float('nan')):.2f} "
                    f"| {r.get('loaded', '–')} | {truth_px} | {r.get('rot_median_deg', float('nan')):.1f} |")
    if truth and (out / "volume.mrc").is_file():
        rows.append(f"| end | final | – | – | {fsc_vs_truth(out / 'volume.mrc', truth):.2f} | – |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("particles")
    parser.add_argument("--truth", help="the true map, for FSC against the truth")
    parser.add_argument("--limits", default="2,4", help="minutes, comma-separated")
    parser.add_argument("--together", action="store_true", help="run the limits side by side")
    parser.add_argument("--out", default="bench_time_limit")
    args = parser.parse_args()
    limits = [float(x) for x in args.limits.split(",")]
    runs = []  # (minutes, out, wall seconds)
    started = []
    for minutes in limits:
        out = Path(args.out) / f"limit_{minutes:g}"
        started.append((minutes, out, time.time(), train(args.particles, out, minutes)))
        if not args.together:
            started[-1][3].wait()
    while started:
        for item in list(started):
            minutes, out, t0, proc = item
            if proc.poll() is not None:
                runs.append((minutes, out, time.time() - t0))
                started.remove(item)
        time.sleep(0.5)
    print("| limit (min) | wall (min) | over by (s) | why it stopped; the finish |\n|---|---|---|---|")
    for minutes, out, wall in sorted(runs):
        print(f"| {minutes:g} | {wall / 60:.2f} | {wall - 60 * minutes:+.0f} | {summary(out)} |", flush=True)
    print("\n".join(monitor_table(max(runs)[1], args.truth)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
