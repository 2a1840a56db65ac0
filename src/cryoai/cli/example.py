"""Run the built-in example end to end: simulate, reconstruct, predict, evaluate, report.

Simulates a small data set of the built-in phantom molecule (no data files needed), trains on
it, predicts every pose, compares the map and the poses with the truth, and writes the report.
Everything lands in OUT (default cryoai_example/).

Example: cryoai example -o cryoai_example
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryoai.cli import main as cli


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--out", default="cryoai_example", help="output folder (default cryoai_example)")
    parser.add_argument("--n", type=int, default=4000, help="particles to simulate (default 4000)")
    parser.add_argument("--box", type=int, default=32, help="box in pixels (default 32)")
    parser.add_argument("--apix", type=float, default=5.0, help="pixel size in Å (default 5)")
    parser.add_argument("--snr", default="inf", help="signal-to-noise ratio (default: no noise)")
    parser.add_argument("--max-minutes", type=float, default=8.0, help="time limit of the train step, warm start and finish included (default 8)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    data, run = out / "data", out / "run"
    steps = [
        ["simulate", "--n", str(args.n), "--box", str(args.box), "--apix", str(args.apix), "--snr", str(args.snr),
         "--shift-std-A", str(args.apix), "-o", str(data)],
        ["train", str(data / "particles.star"), "-o", str(run), "--max-minutes", str(args.max_minutes),
         "--device", args.device],
        ["predict", str(run), str(data / "particles.star"), "-o", str(run / "predicted.star"), "--device", args.device],
        ["evaluate", str(run / "predicted.star"), "--truth", str(data / "particles.star"),
         "--map", str(run / "volume.mrc"), "--truth-map", str(data / "truth.mrc"), "--json"],
    ]
    for argv in steps:
        print(f"\n$ cryoai {' '.join(argv)}", flush=True)
        code = cli.main(argv)
        if code:
            return code
    print(f"\nDone. Map: {run / 'volume.mrc'}  poses: {run / 'particles.star'}  log: {run / 'log.txt'}")
    return 0
