"""RELION 3.1 as a peer in benchmarks/peers.py: the "3D initial model" (SGD) and 3D auto-refine.

Methods (``--methods`` of peers.py):

  * ``relion-initial-model``: ``relion_refine --denovo_3dref --sgd`` with the 3.1 GUI's defaults
    (50 initial / 200 in-between / 50 final iterations, subsets 100 → 500 images, resolution
    35 → 15 Å, ``--healpix_order 1 --offset_range 6 --offset_step 4 --ctf --zero_mask
    --flatten_solvent --particle_diameter D``, ``--j`` threads), one process; the input STAR has
    its pose columns removed so nothing of the truth reaches it;
  * ``relion-refine-from-initial``: 3D auto-refine (``mpirun -n 3 relion_refine_mpi --auto_refine
    --split_random_halves``; MPI needs an odd number ≥ 3 of ranks, rank 0 only coordinates, so the
    cores are oversubscribed) from that initial model's last map;
  * ``relion-refine-from-cryoai``: the same auto-refine from a cryoai run (``--cryoai-run``): its
    volume.mrc as ``--ref`` and its particles.star (cryoai's poses) as ``--i``.

Time to resolution: every map a run writes (``run_itNNN_class001.mrc``, or ``…_half1_…`` in
auto-refine) is timed by its mtime since the start and (about 6 of them) scored with
``cryoai fsc --align`` against the truth, like the other peers; auto-refine rows also carry
RELION's own gold-standard ``rlnCurrentResolution`` of the last iteration. Per-image cost: the
measured seconds per iteration divided by the images the iteration saw (the SGD subset, or N).
A run stopped at ``--minutes`` is extrapolated (initial model only: the schedule's remaining
image-iterations at the measured cost per image-iteration) and the row says so.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from cryoai.io.star import read_star, write_star

from peers_data import Dataset
from peers_env import run_limited
from peers_score import Row, score

# the 3.1 GUI's "3D initial model" defaults
SGD_DEFAULTS = {"ini_iter": 50, "inbetween_iter": 200, "fin_iter": 50, "ini_subset": 100, "fin_subset": 500,
                "ini_resol": 35.0, "fin_resol": 15.0}
POSE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst",
                "rlnOriginX", "rlnOriginY")


def particle_diameter_A(box: int, apix: float) -> float:
    """The mask diameter RELION is given: 90 % of the box (the simulated particles fill ~60 %)."""
    return round(0.9 * box * apix)


def star_without_poses(src: Path, dst: Path) -> Path:
    """A copy of a RELION 3.1 STAR without angles and origins (for the de novo initial model)."""
    blocks = read_star(src)
    blocks["particles"] = blocks["particles"].drop(columns=[c for c in POSE_COLUMNS if c in blocks["particles"]])
    write_star(dst, blocks)
    return dst


def initial_model_cmd(star: Path, out: Path, box: int, apix: float, threads: int, sgd: dict) -> list[str]:
    """relion_refine's command for the 3.1 "3D initial model" job (one process)."""
    return ["relion_refine", "--i", str(star), "--o", str(out / "run"), "--denovo_3dref", "--sgd",
            "--sgd_ini_iter", str(sgd["ini_iter"]), "--sgd_inbetween_iter", str(sgd["inbetween_iter"]),
            "--sgd_fin_iter", str(sgd["fin_iter"]), "--sgd_ini_subset", str(sgd["ini_subset"]),
            "--sgd_fin_subset", str(sgd["fin_subset"]), "--sgd_ini_resol", str(sgd["ini_resol"]),
            "--sgd_fin_resol", str(sgd["fin_resol"]), "--sgd_write_iter", "1", "--K", "1", "--sym", "C1",
            "--healpix_order", "1", "--offset_range", "6", "--offset_step", "4", "--oversampling", "1",
            "--ctf", "--zero_mask", "--flatten_solvent", "--particle_diameter", str(particle_diameter_A(box, apix)),
            "--dont_combine_weights_via_disc", "--pool", "3", "--j", str(threads), "--dont_check_norm"]


def auto_refine_cmd(star: Path, ref: Path, out: Path, box: int, apix: float, threads: int, ini_high_A: float,
                    max_iter: int | None, local_order: int | None = None) -> list[str]:
    """3D auto-refine with 3 MPI ranks (2 workers, one per half set); --firstiter_cc since
    neither reference is on RELION's absolute grey scale. ``local_order``: start at this HEALPix
    order with local searches from the first iteration (``--healpix_order`` = ``--auto_local_healpix_order``,
    RELION then searches around the input STAR's angles), for a STAR whose poses are already good;
    None: the GUI's global start at order 2 (7.5°), local from order 4."""
    start, local = ("2", "4") if local_order is None else (str(local_order), str(local_order))
    offsets = ("5", "2") if local_order is None else ("3", "1")
    cmd = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-n", "3", "relion_refine_mpi",
           "--i", str(star), "--ref", str(ref), "--o", str(out / "run"), "--auto_refine", "--split_random_halves",
           "--ini_high", f"{ini_high_A:g}", "--firstiter_cc", "--ctf", "--particle_diameter",
           str(particle_diameter_A(box, apix)), "--flatten_solvent", "--zero_mask", "--oversampling", "1",
           "--healpix_order", start, "--auto_local_healpix_order", local, "--offset_range", offsets[0],
           "--offset_step", offsets[1],
           "--sym", "C1", "--low_resol_join_halves", "40", "--norm", "--scale", "--pad", "2",
           "--dont_combine_weights_via_disc", "--pool", "3", "--j", str(threads), "--dont_check_norm"]
    return cmd + (["--auto_iter_max", str(max_iter)] if max_iter else [])


def iteration_maps(out: Path) -> list[tuple[int, Path]]:
    """(iteration, map) for every map written: run_itNNN_class001.mrc (SGD) or
    run_itNNN_half1_class001.mrc (auto-refine), then run_class001.mrc (auto-refine's final)."""
    maps = []
    for p in out.glob("run_it*_class001.mrc"):
        m = re.fullmatch(r"run_it(\d+)_(?:half1_)?class001\.mrc", p.name)
        if m and int(m.group(1)) > 0:
            maps.append((int(m.group(1)), p))
    maps.sort()
    if (out / "run_class001.mrc").is_file():
        maps.append((maps[-1][0] + 1 if maps else 1, out / "run_class001.mrc"))
    return maps


def current_resolution_A(out: Path) -> float | None:
    """RELION's own resolution estimate (rlnCurrentResolution) of the last model.star written."""
    models = sorted(out.glob("run_it*_model.star")) + sorted(out.glob("run_model.star"))
    if not models:
        return None
    m = re.search(r"_rlnCurrentResolution\s+(\S+)", models[-1].read_text(errors="replace"))
    return float(m.group(1)) if m else None


def sgd_subset(it: int, sgd: dict) -> int:
    """Images per SGD iteration `it` (1-based): the initial subset, then a linear ramp over the
    in-between iterations, then the final subset (the schedule assumed for per-image costs)."""
    if it <= sgd["ini_iter"]:
        return sgd["ini_subset"]
    if it <= sgd["ini_iter"] + sgd["inbetween_iter"]:
        f = (it - sgd["ini_iter"]) / sgd["inbetween_iter"]
        return round(sgd["ini_subset"] + f * (sgd["fin_subset"] - sgd["ini_subset"]))
    return sgd["fin_subset"]


def run_relion(method: str, ds: Dataset, n: int, sub: Path, workdir: Path, limit_s: float, args,
               cryoai_run: Path | None = None, cryoai_images: Path | None = None) -> Row:
    """Run (or read again, from workdir/run.json) one RELION method → its Row. ``cryoai_images`` is
    the folder the image names of ``cryoai_run``'s particles.star are relative to."""
    if shutil.which("relion_refine") is None:
        raise SystemExit("RELION is not installed: apt-get install relion (RELION 3.1, CPU build)")
    overrides = json.loads(args.relion_sgd or "{}")
    if set(overrides) - set(SGD_DEFAULTS):
        raise SystemExit(f"--relion-sgd: unknown keys {sorted(set(overrides) - set(SGD_DEFAULTS))}; "
                         f"use {sorted(SGD_DEFAULTS)}")
    sgd = dict(SGD_DEFAULTS, **overrides)
    out = workdir / "out"
    if not (workdir / "run.json").is_file():
        out.mkdir(parents=True, exist_ok=True)
        cwd = sub
        if method == "relion-initial-model":
            cmd = initial_model_cmd(star_without_poses(sub / "particles.star", workdir / "particles_nopose.star"),
                                    out, ds.box, ds.apix, args.relion_threads, sgd)
        else:
            if method == "relion-refine-from-initial":
                maps = iteration_maps(workdir.parent / "relion-initial-model" / "out")
                if not maps:
                    raise SystemExit(f"{method} needs relion-initial-model first (in --methods, before it)")
                star, ref = sub / "particles.star", maps[-1][1]
            else:
                if cryoai_run is None:
                    raise SystemExit(f"{method} needs a cryoai run of this data set (--cryoai-run or --run-cryoai)")
                star, ref = cryoai_run / "particles.star", cryoai_run / "volume.mrc"
                cwd = cryoai_images  # cryoai's STAR keeps its input's image names (relative to that folder)
            local = args.relion_local_order if method == "relion-refine-from-cryoai" else None
            cmd = auto_refine_cmd(star, ref, out, ds.box, ds.apix, args.relion_threads, args.relion_ini_high,
                                  args.relion_max_iter, local)
        t_start = time.time()
        wall, finished, rc = run_limited(cmd, workdir / "log.txt", limit_s, cwd=cwd)
        run = {"t_start": t_start, "wall_s": wall, "finished": finished, "rc": rc, "cmd": cmd, "sgd": sgd}
        (workdir / "run.json").write_text(json.dumps(run, indent=1))
    return relion_row(method, ds, n, workdir)


def relion_row(method: str, ds: Dataset, n: int, workdir: Path) -> Row:
    """The row of a RELION run from workdir/run.json and its outputs: time to resolution per map,
    cost per image, RELION's own resolution, extrapolation of an unfinished initial model."""
    run = json.loads((workdir / "run.json").read_text())
    out, sgd = workdir / "out", run["sgd"]
    row = Row(method, ds.name, n, wall_s=run["wall_s"])
    row.status = ("finished" if run["finished"] else
                  "stopped at the limit" if run["rc"] == -1 else f"failed (rc {run['rc']})")
    maps = iteration_maps(out)
    times = [p.stat().st_mtime - run["t_start"] for _, p in maps]
    if len(maps) >= 2:
        per_iter = (times[-1] - times[0]) / (len(maps) - 1)
        if method == "relion-initial-model":
            seen = sum(sgd_subset(it, sgd) for it, _ in maps[1:])
            row.per_image_s = (times[-1] - times[0]) / seen
        else:
            row.per_image_s = per_iter / n
        row.per_epoch_s = {"iteration": per_iter}
    for (it, vol), t in list(zip(maps, times))[:-1][::max(1, len(maps) // 5)]:
        r = Row(method, ds.name, n)
        score(r, ds, vol, workdir)
        row.curve.append((t, r.res_px))
    if maps:
        score(row, ds, maps[-1][1], workdir)
        row.curve.append((times[-1], row.res_px))
        row.notes += f" map {maps[-1][1].name} after {len(maps)} maps;"
    gold = current_resolution_A(out)
    if gold is not None:
        row.notes += f" RELION rlnCurrentResolution {gold:.1f} Å;"
    total = sgd["ini_iter"] + sgd["inbetween_iter"] + sgd["fin_iter"]
    if method == "relion-initial-model" and not run["finished"] and row.per_image_s is not None:
        done = maps[-1][0]
        left = sum(sgd_subset(it, sgd) for it in range(done + 1, total + 1))
        row.notes += (f" extrapolated full schedule: T = {times[-1]:.0f} s for {done} of {total} iterations + "
                      f"{left} image-iterations left × {row.per_image_s:.2f} s = "
                      f"{times[-1] + left * row.per_image_s:.0f} s (resolution of the full run not measured);")
    return row
