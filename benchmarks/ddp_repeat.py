"""Stability of the data-parallel tests: run ``pytest tests/train/test_trainer.py tests/train/test_distributed.py``
K times (the order in which CI's torchrun failures showed up) and count passes, failures and
hangs. A failure here is rare (it was ~1 in 20 before the fixes in train/distributed.py and
train/batches.py), so K should be large for the count to mean much.

Usage: python benchmarks/ddp_repeat.py [--times 8]   (from the repository root)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--times", type=int, default=8)
    args = p.parse_args()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:warnings", "tests/train/test_trainer.py", "tests/train/test_distributed.py"]
    outcomes = []
    for i in range(args.times):
        t0 = time.time()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        last = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
        outcomes.append(done.returncode)
        print(f"run {i + 1}: exit {done.returncode} in {time.time() - t0:.0f} s: {last}", flush=True)
        if done.returncode != 0:
            print(done.stdout[-4000:], flush=True)
    print(f"\n{outcomes.count(0)} of {len(outcomes)} runs passed")


if __name__ == "__main__":
    main()
