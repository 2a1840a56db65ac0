"""Ab initio on realistic simulated sets (issue 11's targets), CPU, default training settings.

For each structure: `cryoai simulate` the realistic set — N true particles plus junk making
20 % of the stack (ice/aggregate blobs, empty picks, fragments, neighbours; total N / 0.8),
SNR 0.05 with `ice` noise, B 80 Å², contrast sd 0.25, defocus error 150 Å, 30 % of the views
within 20° of one direction, shifts σ 6 Å, L=64 at 3 Å/px — then `cryoai train` with default
settings (optionally under --max-minutes), and measures: FSC=0.5 of volume.mrc against the truth
(`cryoai fsc --align`, benchmarks/reconstruction.py's helper), the median rotation error and
% within 10° on the true particles only (`cryoai evaluate` leaves junk out through truth.star),
and, when the run's particles.star has rlnLogLikeliContribution, the ROC AUC of that score for
particle versus junk. Prints a table.

Usage: python benchmarks/realistic.py [--structures 4ake,8zpm] [--n 10000] [--minutes 30]
       [--out bench_realistic] [--seed 0] [--extra "--steps 20"]
Targets (issue 11): FSC0.5 ≤ 3.5 px, median rotation ≤ 6°, AUC ≥ 0.95 within 30 minutes.
Run it alone on the machine: timings mean nothing with other jobs beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from reconstruction import DATA, cryoai, fsc_vs_truth

from cryoai.eval.roc import roc_auc
from cryoai.io.star import read_star
from cryoai.simulate import JUNK_KIND_COLUMN, TRUTH_STAR

STRUCTURES = {  # both fit a 64-px box at 3 Å/px (192 Å): 4AKE ~ 60 Å, 8ZPM ~ 110 Å long
    "4ake": ["--model", str(DATA / "adk_open_4AKE.pdb")],
    "8zpm": ["--model", str(DATA / "8zpm.cif")],
    "phantom": [],
}
JUNK_FRACTION = 0.2
REALISTIC = ["--box", "64", "--apix", "3", "--snr", "0.05", "--noise-spectrum", "ice", "--bfactor", "80",
             "--contrast-sd", "0.25", "--defocus-error-A", "150", "--preferred-view", "0,90",
             "--preferred-fraction", "0.3", "--preferred-spread-deg", "20", "--shift-std-A", "6",
             "--junk-fraction", str(JUNK_FRACTION)]
SCORE = "rlnLogLikeliContribution"


def fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def junk_auc(run_star: Path, truth_star: Path) -> float | None:
    """ROC AUC of the run's rlnLogLikeliContribution for true particles (positive) vs junk, or
    None when the run wrote no such score."""
    run = read_star(run_star)["particles"]
    if SCORE not in run.columns:
        return None
    truth = read_star(truth_star)["particles"]
    kinds = dict(zip(truth["rlnImageName"].astype(str).str.strip(), truth[JUNK_KIND_COLUMN]))
    names = run["rlnImageName"].astype(str).str.strip()
    is_particle = names.map(kinds).to_numpy() == "particle"
    return roc_auc(run[SCORE].to_numpy(float), is_particle)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--structures", default="4ake,8zpm")
    p.add_argument("--n", type=int, default=10000, help="true particles (the stack holds N / 0.8 with the junk)")
    p.add_argument("--minutes", type=float, default=None, help="--max-minutes for cryoai train (default: none)")
    p.add_argument("--out", default="bench_realistic")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extra", default="", help="extra arguments for cryoai train")
    args = p.parse_args()
    total = int(round(args.n / (1 - JUNK_FRACTION)))
    rows = []
    for name in args.structures.split(","):
        base = Path(args.out) / f"{name}_n{args.n}_s{args.seed}"
        data, run = base / "data", base / "run"
        if not (data / "particles.star").is_file():
            cryoai("simulate", *STRUCTURES[name], *REALISTIC, "--n", str(total), "--seed", str(args.seed),
                   "-o", str(data))
        minutes = ["--max-minutes", str(args.minutes)] if args.minutes else []
        t0 = time.time()
        cryoai("train", str(data / "particles.star"), "-o", str(run), "--seed", str(args.seed), "--quiet",
               *minutes, *args.extra.split())
        wall = time.time() - t0
        fsc = fsc_vs_truth(run / "volume.mrc", data / "truth.mrc", run / "fsc_vs_truth")
        poses = json.loads(cryoai("evaluate", str(run / "particles.star"), "--truth", str(data / "particles.star"),
                                  "--json", capture=True).strip().splitlines()[-1])
        auc = junk_auc(run / "particles.star", data / TRUTH_STAR)
        rows.append((name, total, poses["n_junk_excluded"], wall, fsc, poses, auc))
        print(f"{name}: {total} images ({poses['n_junk_excluded']} junk), FSC0.5 {fmt(fsc)} px, median rot "
              f"{poses['rot_median_deg']:.1f}°, within 10° {100 * poses['frac_within_10deg']:.0f} %, "
              f"AUC {fmt(auc, 3)}, train {wall / 60:.1f} min", file=sys.stderr)
    print("\n| structure | images (junk) | train (min) | FSC0.5 vs truth (px) | median rot, particles (deg) "
          "| within 10° (%) | junk AUC |")
    print("|---|---|---|---|---|---|---|")
    for name, total, n_junk, wall, fsc, m, auc in rows:
        print(f"| {name} | {total} ({n_junk}) | {wall / 60:.1f} | {fmt(fsc)} | {m['rot_median_deg']:.1f} | "
              f"{100 * m['frac_within_10deg']:.0f} | {fmt(auc, 3)} |")


if __name__ == "__main__":
    main()
