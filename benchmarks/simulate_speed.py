"""Simulation rate (images/s) and peak memory (RSS) while simulating N images.

Usage: python benchmarks/simulate_speed.py [--n 100000] [--box 64] [--out /tmp/sim_bench]
Peak RSS is read from the child process (resource.getrusage of children, in MiB).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100000)
    p.add_argument("--box", type=int, default=64)
    p.add_argument("--out", default="/tmp/sim_bench")
    args = p.parse_args()
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "cryoai.cli.main", "simulate", "--n", str(args.n), "--box", str(args.box),
                    "--apix", "2.5", "--snr", "0.1", "--shift-std-A", "5", "-o", args.out], check=True,
                   stderr=subprocess.DEVNULL)
    wall = time.time() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    stack_mib = args.n * args.box * args.box * 4 / 2**20
    print("| N | box | wall (s) | images/s (start-up included) | peak RSS (MiB) | stack on disk (MiB) |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.n} | {args.box} | {wall:.1f} | {args.n / wall:.0f} | {peak_mib:.0f} | {stack_mib:.0f} |")


if __name__ == "__main__":
    main()
