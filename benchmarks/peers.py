"""Side-by-side benchmark against the peer methods cryoDRGN, ASPIRE and RELION (issue "Scale").

What it measures, on cryoai-simulated datasets with a known truth (`cryoai simulate` folders:
particles.star + particles.mrcs + truth.mrc):

  * cryoDRGN 4.x `cryodrgn abinit --zdim 0` (cryoDRGN-AI, homogeneous) and
    `cryodrgn abinit_homo_old` (the cryoDRGN2 method);
  * ASPIRE common lines: class averages → CLSyncVoting (or CommonlineSDP) → mean estimator
    (the job itself is `benchmarks/peers_aspire_job.py`, run in ASPIRE's environment);
  * RELION 3.1 (the Debian `relion` package): the SGD "3D initial model" and 3D auto-refine from it
    or from cryoai's map and poses (benchmarks/peers_relion.py says how; methods relion-initial-model,
    relion-refine-from-initial, relion-refine-from-cryoai);
  * cryoai: a finished run (`--cryoai-run DIR`, wall from its log.txt) or a new one (`--run-cryoai`).

For every run: wall time (one CPU thread: OMP/MKL/OPENBLAS_NUM_THREADS=1 and each tool's own
thread option), cost per image and per epoch (cryoDRGN, from the per-epoch maps it writes),
whether it finished inside `--minutes`, the output map (rewritten as MRC at the dataset's box
and voxel size) and FSC=0.5 against the truth after alignment with one implementation for all
(`cryoai fsc TRUTH MAP --align`). Where a run cannot finish, its full schedule at N images is
extrapolated from the measured per-image costs and the row says "extrapolated" with the formula.

Each peer is installed from PyPI into its own virtual environment (default
~/.cache/cryoai-peers/, reused when present): cryoDRGN with `torch==2.13.0` pinned first (CPU
build), ASPIRE as `aspire`. The installed versions are printed and written to --out.
cryoDRGN and ASPIRE are GPL: they are called as programs, no code of theirs is copied here.

Usage (run it alone on the machine: timings mean nothing with other jobs beside it):

  python benchmarks/peers.py --data /tmp/bench/4ake_n10000_snrinf/data,/tmp/bench/4ake_n10000_snr0.1/data \
      --n 1000,10000 --methods drgn-abinit,drgn-homo-old,aspire --minutes 25 --out /tmp/peers_out \
      --cryoai-run /tmp/bench/4ake_n10000_snrinf/r0 --cryoai-run /tmp/bench/4ake_n10000_snr0.1/r0

cryoDRGN's pose search costs seconds per image on one CPU thread (measured 2026-11-25: abinit
9.5 s, abinit_homo_old 1.8 s rising to 4.8 s as its radius L ramps up), so on this hardware only a
few dozen images finish even one pose-search epoch in a time box: use e.g. `--n 32` for its cost
rows, which are then extrapolated to `--extrapolate-to`.

A run directory already holding a result (result.json, or run.json for a finished peer process)
is reused, so a rerun only does what is missing; `--fresh` redoes everything; `--report-only`
runs nothing new and tabulates what --out holds. Outputs: OUT/<dataset>_n<N>/<method>/ (maps, logs, FSC
curves), OUT/peers.md (the table) and OUT/peers.json (every number).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

# the modules beside this script, one per concept: environments and child processes, data sets,
# result rows and their scoring, each peer's runner, the table
import peers_relion
from peers_aspire import extrapolate_aspire, run_aspire
from peers_cryoai import cryoai_row, extrapolate_cryoai, run_cryoai
from peers_data import load_dataset, make_subset
from peers_drgn import DRGN_EPOCHS, extrapolate_drgn, run_drgn
from peers_env import VERSION_PACKAGES, ensure_venv, package_versions
from peers_score import Row
from peers_table import write_outputs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="comma-separated cryoai simulate folders (particles.star, truth.mrc)")
    p.add_argument("--n", default="1000", help="comma-separated particle counts (first N of each set)")
    p.add_argument("--methods", default="drgn-abinit,drgn-homo-old,aspire")
    p.add_argument("--minutes", type=float, default=25, help="wall-clock limit per peer run")
    p.add_argument("--epochs", type=int, default=DRGN_EPOCHS, help="cryoDRGN epochs (its default 30)")
    p.add_argument("--extrapolate-to", default="10000,100000", help="N for the cryoDRGN extrapolated rows")
    p.add_argument("--aspire-orient", default="sync_voting", choices=["sync_voting", "sdp"])
    p.add_argument("--aspire-classes", type=int, default=500, help="class averages used for common lines")
    p.add_argument("--aspire-nbor", type=int, default=50, help="images per class average")
    p.add_argument("--aspire-n-theta", type=int, default=360, help="common-lines angular sampling")
    p.add_argument("--aspire-downsample", type=int, default=0, help="ASPIRE works at this box (0: the data's)")
    p.add_argument("--relion-threads", type=int, default=2, help="RELION's --j (threads per process)")
    p.add_argument("--relion-sgd", default="", help='JSON overriding the initial model\'s GUI defaults, e.g. '
                   '\'{"ini_iter": 2, "inbetween_iter": 2, "fin_iter": 1}\' (keys: peers_relion.SGD_DEFAULTS)')
    p.add_argument("--relion-ini-high", type=float, default=60.0, help="auto-refine --ini_high in Å (GUI default 60)")
    p.add_argument("--relion-max-iter", type=int, help="auto-refine --auto_iter_max (default: until it converges)")
    p.add_argument("--relion-local-order", type=int, help="relion-refine-from-cryoai: local searches from the first "
                   "iteration at this HEALPix order (3: 7.5°/2, RELION searching around cryoai's angles); default global")
    p.add_argument("--cryoai-run", action="append", default=[], help="an existing cryoai run dir (repeatable)")
    p.add_argument("--run-cryoai", action="store_true", help="also train cryoai on each subset")
    p.add_argument("--peers-home", default=str(Path.home() / ".cache" / "cryoai-peers"))
    p.add_argument("--out", default="peers_out")
    p.add_argument("--fresh", action="store_true", help="ignore results already in --out")
    p.add_argument("--report-only", action="store_true", help="run nothing new: tabulate what --out holds")
    args = p.parse_args()

    out, home = Path(args.out), Path(args.peers_home)
    out.mkdir(parents=True, exist_ok=True)
    methods = args.methods.split(",")
    bins, versions = {}, {}
    for env_name in ["cryodrgn"] * any(m.startswith("drgn") for m in methods) + ["aspire"] * ("aspire" in methods):
        bins[env_name] = ensure_venv(env_name, home)
        versions[env_name] = package_versions(bins[env_name], VERSION_PACKAGES[env_name])
    print(f"[peers] versions: {json.dumps(versions)}", flush=True)

    rows: list[Row] = []
    datasets = [load_dataset(Path(d)) for d in args.data.split(",")]
    cryoai_runs: dict[tuple[str, int], tuple[Path, Path]] = {}  # (data set, N) → (run, folder its image names are in)
    for run in map(Path, args.cryoai_run):
        cfg = (run / "config.yaml").read_text()
        ds = next((d for d in datasets if str(d.folder.resolve() / "particles.star") in cfg), None)
        if ds is None:
            print(f"[peers] {run}: its particles are none of --data, skipped", flush=True)
            continue
        workdir = out / f"{ds.name}_cryoai_{run.name}"
        row = cached(workdir, args.fresh, lambda: cryoai_row(run, ds, workdir))
        cryoai_runs[(ds.name, row.n)] = (run, ds.folder)
        rows += [row] + [extrapolate_cryoai(row, m) for m in map(int, args.extrapolate_to.split(",")) if m > row.n]
    for ds in datasets:
        for n in map(int, args.n.split(",")):
            if n > ds.n:
                continue
            if args.report_only and not (out / f"{ds.name}_n{n}").is_dir():
                continue
            sub = make_subset(ds, n, out / f"{ds.name}_n{n}" / "data")
            limit = args.minutes * 60
            for method in methods:
                workdir = out / f"{ds.name}_n{n}" / method
                if args.report_only and not ((workdir / "result.json").is_file() or (workdir / "run.json").is_file()):
                    continue
                if method.startswith("drgn"):
                    row = cached(workdir, args.fresh, lambda: run_drgn(method, bins["cryodrgn"], sub, ds, n, workdir, limit, args.epochs))
                    rows.append(row)
                    rows += [x for m in map(int, args.extrapolate_to.split(","))
                             if m > n and (x := extrapolate_drgn(row, m)) is not None]
                elif method.startswith("relion"):
                    if method == "relion-refine-from-cryoai" and args.run_cryoai:
                        cryo = out / f"{ds.name}_n{n}" / "cryoai"
                        cached(cryo, args.fresh, lambda: run_cryoai(ds, sub, n, cryo, limit))
                        cryoai_runs[(ds.name, n)] = (cryo / "run", sub)
                    cryo_run, cwd = cryoai_runs.get((ds.name, n), (None, None))
                    rows.append(cached(workdir, args.fresh, lambda: peers_relion.run_relion(
                        method, ds, n, sub, workdir, limit, args, cryo_run, cwd)))
                elif method == "aspire":
                    row = cached(workdir, args.fresh, lambda: run_aspire(bins["aspire"], sub, ds, n, workdir, limit, args))
                    rows.append(row)
                    rows += [x for m in map(int, args.extrapolate_to.split(","))
                             if m > n and (x := extrapolate_aspire(row, m)) is not None]
                else:
                    raise SystemExit(f"unknown method {method}")
            workdir = out / f"{ds.name}_n{n}" / "cryoai"
            if args.run_cryoai and not args.report_only or args.report_only and (workdir / "result.json").is_file():
                rows.append(cached(workdir, args.fresh, lambda: run_cryoai(ds, sub, n, workdir, limit)))
            write_outputs(out, rows, versions, args)
    write_outputs(out, rows, versions, args)


def cached(workdir: Path, fresh: bool, compute) -> Row:
    """The row saved in workdir/result.json, or compute (and save) it."""
    result = workdir / "result.json"
    if result.is_file() and not fresh:
        return Row(**json.loads(result.read_text()))
    if fresh:
        (workdir / "run.json").unlink(missing_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    row = compute()
    result.write_text(json.dumps(asdict(row), indent=1))
    return row



if __name__ == "__main__":
    main()
