"""Reconstruction accuracy over wall time on simulated data (issue targets, CPU).

For each structure: `cryoai simulate` (L=64, 2.5 Å/px or where the molecule needs it more, CTF,
shifts σ=5 Å, N images, SNR),
`cryoai train` with default settings under --max-minutes, then for each map saved during
training and each round of the finish: FSC=0.5 vs the truth after alignment (`cryoai fsc
--align`), and the pose errors logged in metrics.jsonl (during training); finally `cryoai evaluate` on all predicted poses. Prints a table.

Usage: python benchmarks/reconstruction.py [--structures 4ake,3j9g] (also 8zpm, apoferritin (O), 3j9g-d6, phantom) [--n 10000] [--snr inf]
       [--minutes 30] [--out bench_out] [--loss symmetric] [--seed 0]
Run it alone on the machine: timings mean nothing with other jobs beside it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "maps_models"
# source; the pixel size (Å) at which the molecule fits a box of 64 with a margin: 3J9G
# spans ~260 Å (its map fills 64 px at 4.4 Å/px; at 2.5 Å/px the box would cut it), so 6 Å/px;
# the point group pose errors are measured under (3J9G's map is C6 about z: a 60° turn
# correlates 0.986 with it, a 90° turn 0.50)
STRUCTURES = {
    "4ake": (["--model", str(DATA / "adk_open_4AKE.pdb")], 2.5, "C1"),
    "3j9g": (["--map", str(DATA / "3j9g_potential_ps4_4.mrc")], 6.0, "C6"),
    "8zpm": (["--model", str(DATA / "8zpm.cif")], 2.5, "C1"),
    "phantom": ([], 2.5, "C1"),
    # apoferritin's Cα model is O in RELION's orientation (its map scores 1.000 about the standard axes)
    "apoferritin": (["--model", str(DATA / "apoferritin_ca_apo_sym.pdb")], 2.5, "O"),
    # a dihedral particle: 3J9G's map averaged over D6 (its ring and the ring turned over about x)
    "3j9g-d6": (["--map", "{out}/3j9g_d6.mrc"], 6.0, "D6"),
}


def make_d6_map(out: Path) -> None:
    """``{out}/3j9g_d6.mrc``: 3J9G's map (C6 about z) symmetrised over D6, its voxel size kept."""
    from cryoai.eval.map_symmetry import symmetrise_map
    from cryoai.io.mrc import read_map, write_map

    vol, apix = read_map(DATA / "3j9g_potential_ps4_4.mrc")
    write_map(out / "3j9g_d6.mrc", symmetrise_map(vol, "D6"), apix)


def cryoai(*args: str, capture: bool = False) -> str:
    cmd = [sys.executable, "-m", "cryoai.cli.main", *args]
    res = subprocess.run(cmd, check=True, text=True, capture_output=capture)
    return res.stdout if capture else ""


def fsc_vs_truth(volume: Path, truth: Path, out_prefix: Path) -> float:
    out = cryoai("fsc", str(truth), str(volume), "--align", "--json", "-o", str(out_prefix), capture=True)
    return json.loads(out.strip().splitlines()[-1])["res_0.5_px"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--structures", default="4ake,3j9g")
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--snr", default="inf")
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--out", default="bench_out")
    p.add_argument("--loss", default="symmetric")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extra", default="", help="extra arguments for cryoai train")
    args = p.parse_args()
    rows = []
    for name in args.structures.split(","):
        base = Path(args.out) / f"{name}_n{args.n}_snr{args.snr}"
        data, run = base / "data", base / f"run_{args.loss}_s{args.seed}"
        if not (data / "particles.star").is_file():
            source, apix, _ = STRUCTURES[name]
            if name == "3j9g-d6":
                make_d6_map(Path(args.out))
            source = [a.replace("{out}", str(args.out)) for a in source]
            cryoai("simulate", *source, "--n", str(args.n), "--box", "64", "--apix", str(apix),
                   "--snr", args.snr, "--shift-std-A", "5", "--seed", str(args.seed), "-o", str(data))
        t0 = time.time()
        cryoai("train", str(data / "particles.star"), "-o", str(run), "--max-minutes", str(args.minutes),
               "--loss", args.loss, "--seed", str(args.seed), "--quiet", *args.extra.split())
        wall = time.time() - t0
        metrics = [json.loads(line) for line in open(run / "metrics.jsonl")]
        timed = {m["step"]: m for m in metrics if "elapsed_s" in m}
        posed = {m["step"]: m for m in metrics if "rot_median_deg" in m}
        print(f"\n## {name}: N={args.n}, SNR={args.snr}, loss={args.loss}, seed={args.seed}, wall {wall / 60:.1f} min")
        print("| step | minutes | median rot err (deg, last check) | within 10 deg | FSC=0.5 vs truth (px) |")
        print("|---|---|---|---|---|")
        for vol in sorted((run / "volumes").glob("step_*.mrc")):
            step = int(vol.stem.split("_")[1])
            t = timed.get(step, {})
            m = posed.get(max((s for s in posed if s <= step), default=-1), {})  # the last pose check before it
            res = fsc_vs_truth(vol, data / "truth.mrc", run / f"fsc_{step:06d}")
            print(f"| {step} | {t.get('elapsed_s', float('nan')) / 60:.1f} | {m.get('rot_median_deg', float('nan')):.1f} | "
                  f"{m.get('frac_within_10deg', float('nan')):.2f} | {res:.2f} |")
        for vol in sorted((run / "volumes").glob("final_round_*.mrc"), key=lambda v: int(v.stem.split("_")[-1])):
            res = fsc_vs_truth(vol, data / "truth.mrc", run / f"fsc_{vol.stem}")  # the finish's rounds, timed by their files
            print(f"| finish round {vol.stem.split('_')[-1]} | {(vol.stat().st_mtime - t0) / 60:.1f} | – | – | {res:.2f} |")
        final = json.loads(cryoai("evaluate", str(run / "particles.star"), "--truth", str(data / "particles.star"),
                                  "--map", str(run / "volume.mrc"), "--truth-map", str(data / "truth.mrc"),
                                  "--symmetry", STRUCTURES[name][2],
                                  "--json", capture=True).strip().splitlines()[-1])
        rate = [m["images_per_s"] for m in metrics if "images_per_s" in m]
        rows.append((name, final, wall, sum(rate) / max(len(rate), 1)))
        print(f"final: median rot {final['rot_median_deg']:.1f} deg, within 10 deg {final['frac_within_10deg']:.2f}, "
              f"trans median {final['trans_median_px']:.2f} px, FSC=0.5 {final.get('res_0.5_px')} px "
              f"({final.get('res_0.5_A')} Å), hand {final['hand']}, train {sum(rate) / max(len(rate), 1):.0f} images/s")
    print("\n| structure | median rot (deg) | within 10 deg | trans median (px) | FSC=0.5 (px) | wall (min) | train images/s |")
    print("|---|---|---|---|---|---|---|")
    for name, f, wall, rate in rows:
        print(f"| {name} | {f['rot_median_deg']:.1f} | {f['frac_within_10deg']:.2f} | {f['trans_median_px']:.2f} | "
              f"{f.get('res_0.5_px')} | {wall / 60:.1f} | {rate:.0f} |")


if __name__ == "__main__":
    main()
