"""ASPIRE as a peer in benchmarks/peers.py: common lines on class averages, run as
benchmarks/peers_aspire_job.py in ASPIRE's own environment; the row of a run from the job's
aspire.json, and its extrapolation to another N."""

from __future__ import annotations

import json
from pathlib import Path

from peers_data import Dataset
from peers_env import HERE, run_limited
from peers_score import Row, score


def run_aspire(bindir: Path, sub: Path, ds: Dataset, n: int, workdir: Path, limit_s: float, args) -> Row:
    """ASPIRE common lines (peers_aspire_job.py in ASPIRE's environment) under the time limit (a run
    already recorded in workdir/run.json is only read again)."""
    method = f"aspire-{args.aspire_orient}"
    if (workdir / "run.json").is_file():
        return aspire_row(method, ds, n, workdir)
    cmd = [str(bindir / "python"), str(HERE / "peers_aspire_job.py"), str(sub / "particles.star"), "--apix", str(ds.apix),
           "--orient", args.aspire_orient, "--classes", str(args.aspire_classes), "--n-nbor", str(args.aspire_nbor),
           "--n-theta", str(args.aspire_n_theta), "--downsample", str(args.aspire_downsample), "-o", str(workdir)]
    if "snrinf" in ds.name:  # noise-free: ASPIRE's noise normalisation/whitening would divide by ~0
        cmd.append("--no-noise")
    # cwd = workdir: ASPIRE writes logs/ and the mean estimator's volume_checkpoint_*.npy there
    wall, finished, rc = run_limited(cmd, workdir / "log.txt", limit_s, cwd=workdir)
    (workdir / "run.json").write_text(json.dumps({"wall_s": wall, "finished": finished, "rc": rc, "cmd": cmd}, indent=1))
    return aspire_row(method, ds, n, workdir)


def aspire_row(method: str, ds: Dataset, n: int, workdir: Path) -> Row:
    """The row of an ASPIRE run from workdir/run.json and the job's aspire.json."""
    run = json.loads((workdir / "run.json").read_text())
    row = Row(method, ds.name, n, wall_s=run["wall_s"], per_image_s=run["wall_s"] / n)
    row.status = "finished" if run["finished"] else ("stopped at the limit" if run["rc"] == -1 else f"failed (rc {run['rc']})")
    if "--no-noise" in run["cmd"]:
        row.notes += " no-noise set: background normalisation and whitening skipped;"
    result = workdir / "aspire.json"
    if result.is_file():
        info = json.loads(result.read_text())
        row.per_epoch_s = info.get("stages_s", {})
        row.notes += f" {info['classes']} class averages of {n};"
        row.notes += " stages " + ", ".join(f"{k} {v:.0f} s" for k, v in row.per_epoch_s.items()) + ";"
        if run["finished"] and Path(info["map"]).is_file():
            score(row, ds, Path(info["map"]), workdir)
            if info.get("map_box") != ds.box:
                row.notes += f" map at box {info['map_box']} Fourier-padded to {ds.box};"
    return row


def extrapolate_aspire(row: Row, n_to: int) -> Row | None:
    """ASPIRE at `n_to` images: preprocessing and class averaging (every image's class is averaged for
    the selection) taken ∝ N, common lines and the mean estimator fixed (a fixed number of class
    averages). The nearest-neighbour search grows faster than N, so this is a lower bound."""
    st = row.per_epoch_s
    if row.status != "finished" or "common lines" not in st:
        return None
    lin = st.get("preprocess", 0.0) + st.get("class averages", 0.0)
    fixed = st["common lines"] + st.get("mean estimator", 0.0)
    wall = lin * n_to / row.n + fixed + (row.wall_s - sum(st.values()))  # + start-up, as measured
    return Row(row.method, row.dataset, n_to, wall_s=wall, per_image_s=wall / n_to, status="extrapolated (lower bound)",
               notes=f"T = {n_to}/{row.n} × (preprocess + class averages) {lin:.0f} s + common lines + mean estimator "
                     f"{fixed:.0f} s + start-up {row.wall_s - sum(st.values()):.0f} s; resolution not measured at this N")
