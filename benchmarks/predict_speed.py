"""`cryoai predict` throughput at L=64, process start-up included (target ≥ 200 images/s on CPU).

Usage: python benchmarks/predict_speed.py RUN PARTICLES.star
(RUN is a `cryoai train` output; e.g. one made by benchmarks/reconstruction.py.)
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import starfile


def main() -> None:
    run, star = sys.argv[1], sys.argv[2]
    n = len(starfile.read(star)["particles"])
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "cryoai.cli.main", "predict", run, star, "-o", "/tmp/predict_bench.star",
                    "--quiet"], check=True)
    wall = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("| particles | wall (s, start-up included) | images/s | peak RSS (MiB) |")
    print("|---|---|---|---|")
    print(f"| {n} | {wall:.1f} | {n / wall:.0f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
