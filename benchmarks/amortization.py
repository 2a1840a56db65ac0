"""Amortization, the paper's central claim: time to a fixed resolution on 10k vs 100k images.

For each data-set size N: `cryoai simulate` (same structure, box 64, CTF, shifts σ=5 Å, SNR,
seed; only N differs), then `cryoai train` with default settings and no time limit. Every map
the run writes on the way (`volumes/step_*.mrc` during training, `volumes/final_round_*.mrc`
in the final refinement rounds, `volume.mrc` at the end) is timed by its file time from the
launch of `cryoai train` and scored by FSC=0.5 against the truth after alignment
(`cryoai fsc --align`). Time to resolution = the time of the first map at or below the target.
Times are wall time and CPU time (user + system) of the training process, sampled every 2 s
from /proc (Linux): CPU time is what other jobs on the machine do not inflate. Prints one
table per run and a summary with the ratio to the smallest N (the goal is ≤ 1.2).

Usage: python benchmarks/amortization.py [--structure 4ake] [--sizes 10000,100000] [--snr inf]
       [--target-px 3.0] [--threads 1] [--out bench_amortization] [--extra "..."]
A finished run is not trained again (delete its folder to retrain); its maps are re-scored.
Run it alone on the machine: timings mean nothing with other jobs beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconstruction import STRUCTURES, cryoai, fsc_vs_truth  # noqa: E402


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc), None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def train_timed(data: Path, run: Path, extra: list[str]) -> dict:
    """Trains once. RUN/bench_times.json keeps the launch time, the wall and CPU seconds, and
    ``series``: (wall time, CPU seconds so far) of the training process every 2 s."""
    times = run / "bench_times.json"
    if times.is_file() and (run / "volume.mrc").is_file():
        return json.loads(times.read_text())

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    t0, c0 = time.time(), children_cpu()
    proc = subprocess.Popen([sys.executable, "-m", "cryoai.cli.main", "train", str(data / "particles.star"),
                             "-o", str(run), "--quiet", *extra])
    series = [(t0, 0.0)]
    while proc.poll() is None:
        cpu = cpu_seconds(proc.pid)
        if cpu is not None:
            series.append((time.time(), cpu))
        time.sleep(2)
    if proc.returncode:
        raise SystemExit(f"cryoai train failed (exit {proc.returncode}) on {data}")
    record = {"launched": t0, "wall_s": time.time() - t0, "cpu_s": children_cpu() - c0}
    record["series"] = series + [(t0 + record["wall_s"], record["cpu_s"])]
    times.write_text(json.dumps(record))
    return record


def cpu_at(times: dict, wall: float) -> float:
    """CPU seconds the training process had used at wall time ``wall`` (interpolated)."""
    t, c = np.asarray(times["series"]).T
    return float(np.interp(wall, t, c))


def maps_in_order(run: Path) -> list[Path]:
    """The run's maps in the order they were written."""
    maps = sorted((run / "volumes").glob("step_*.mrc")) + sorted((run / "volumes").glob("final_round_*.mrc"))
    return maps + [run / "volume.mrc"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--structure", default="4ake", choices=sorted(STRUCTURES))
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--snr", default="inf")
    p.add_argument("--target-px", type=float, default=3.0, help="FSC=0.5 resolution to reach (pixels)")
    p.add_argument("--threads", type=int, default=1, help="OMP/MKL threads of every cryoai process")
    p.add_argument("--out", default="bench_amortization")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extra", default="", help="extra arguments for cryoai train (the same for every N)")
    args = p.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    summary = []
    for n in [int(s) for s in args.sizes.split(",")]:
        base = Path(args.out) / f"{args.structure}_n{n}_snr{args.snr}"
        data, run = base / "data", base / f"run_s{args.seed}"
        if not (data / "particles.star").is_file():
            source, apix, _ = STRUCTURES[args.structure]
            cryoai("simulate", *source, "--n", str(n), "--box", "64", "--apix", str(apix), "--snr", args.snr,
                   "--shift-std-A", "5", "--seed", str(args.seed), "-o", str(data))
        times = train_timed(data, run, ["--seed", str(args.seed), *args.extra.split()])
        print(f"\n## {args.structure}, N={n}, SNR={args.snr}: wall {times['wall_s'] / 60:.1f} min, "
              f"CPU {times['cpu_s'] / 60:.1f} min")
        print("| map | wall minutes from launch | CPU minutes | FSC=0.5 vs truth (px) |")
        print("|---|---|---|---|")
        reached = None
        for vol in maps_in_order(run):
            written = vol.stat().st_mtime
            wall, cpu = (written - times["launched"]) / 60, cpu_at(times, written) / 60
            res = fsc_vs_truth(vol, data / "truth.mrc", run / f"fsc_{vol.stem}")
            print(f"| {vol.relative_to(run)} | {wall:.1f} | {cpu:.1f} | {res:.2f} |")
            if reached is None and res <= args.target_px:
                reached = (wall, cpu)
        summary.append((n, reached, times["wall_s"] / 60, times["cpu_s"] / 60, res))

    print(f"\n## Summary: {args.structure}, SNR={args.snr}, target FSC=0.5 ≤ {args.target_px} px, {args.threads} thread(s)")
    print("| N | to target: wall / CPU min | CPU ratio | total: wall / CPU min | CPU ratio | final FSC=0.5 (px) |")
    print("|---|---|---|---|---|---|")
    _, reached0, _, cpu0, _ = summary[0]
    for n, reached, wall, cpu, res in summary:
        to_target = f"{reached[0]:.1f} / {reached[1]:.1f}" if reached else "not reached"
        ratio = f"{reached[1] / reached0[1]:.2f}" if reached and reached0 else "–"
        print(f"| {n} | {to_target} | {ratio} | {wall:.1f} / {cpu:.1f} | {cpu / cpu0:.2f} | {res:.2f} |")


if __name__ == "__main__":
    main()
