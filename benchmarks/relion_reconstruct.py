"""RELION rebuilds cryoai's map from cryoai's STAR: `relion_reconstruct --ctf` from a finished run's
particles.star, scored against the truth exactly as the run's own volume.mrc.

    python benchmarks/relion_reconstruct.py RUN DATA [RUN DATA ...]

RUN is a finished `cryoai train` directory, DATA the `cryoai simulate` folder it was trained on
(truth.mrc; the STAR's image names are relative to it). For each pair: FSC=0.5 against the truth
(`cryoai fsc TRUTH MAP --align`) of volume.mrc and of RELION's reconstruction from the same poses,
origins and CTFs (all particles, rlnSelected ignored, as RELION would read the file; and the kept
ones, rlnSelected = 1, as volume.mrc is made), their difference (target: within 0.2 px), and
RELION's wall time. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from peers_score import fsc_vs_truth  # noqa: E402

from cryoai.io.star import read_star, write_star  # noqa: E402


def relion_map(star: Path, data: Path, out: Path) -> float:
    """relion_reconstruct --ctf of ``star`` (image names relative to ``data``) → seconds."""
    t0 = time.time()
    subprocess.run(["relion_reconstruct", "--i", str(star.resolve()), "--o", str(out.resolve()), "--ctf"],
                   cwd=data, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return time.time() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pairs", nargs="+", type=Path, help="RUN DATA [RUN DATA ...]")
    p.add_argument("--out", type=Path, default=Path("relion_reconstruct_out"))
    args = p.parse_args()
    if len(args.pairs) % 2 or shutil.which("relion_reconstruct") is None:
        raise SystemExit("give RUN DATA pairs, with RELION installed (apt-get install relion)")
    rows = []
    for run, data in zip(args.pairs[::2], args.pairs[1::2]):
        work = args.out / f"{data.parent.name}_{run.name}"
        work.mkdir(parents=True, exist_ok=True)
        blocks = read_star(run / "particles.star")
        table = blocks["particles"]
        kept_star = work / "kept.star"
        if "rlnSelected" in table:
            write_star(kept_star, dict(blocks, particles=table[table["rlnSelected"].astype(int) == 1]))
        else:
            shutil.copy(run / "particles.star", kept_star)
        ours = fsc_vs_truth(data / "truth.mrc", run / "volume.mrc", work / "ours")
        result = {"ours": ours["res_0.5_px"]}
        seconds = {}
        for name, star in (("all", run / "particles.star"), ("kept", kept_star)):
            seconds[name] = relion_map(star, data, work / f"relion_{name}.mrc")
            result[name] = fsc_vs_truth(data / "truth.mrc", work / f"relion_{name}.mrc", work / f"relion_{name}")["res_0.5_px"]
        rows.append((data.parent.name, run.name, len(table), int((table.get("rlnSelected", 1) == 1).sum()),
                     result, seconds))
        print(f"{rows[-1][0]}: ours {result['ours']:.2f} px, RELION all {result['all']:.2f} px, "
              f"kept {result['kept']:.2f} px", flush=True)
    print("\n| set | run | particles (kept) | volume.mrc FSC0.5 (px) | relion_reconstruct, kept (px) | difference (px) "
          "| relion_reconstruct, all (px) | RELION wall, kept (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run, n, kept, r, s in rows:
        print(f"| {name} | {run} | {n} ({kept}) | {r['ours']:.2f} | {r['kept']:.2f} | {r['kept'] - r['ours']:+.2f} "
              f"| {r['all']:.2f} | {s['kept']:.0f} |")


if __name__ == "__main__":
    main()
