"""cryoDRGN as a peer in benchmarks/peers.py: `cryodrgn abinit --zdim 0` (cryoDRGN-AI, homogeneous)
and `cryodrgn abinit_homo_old` (the cryoDRGN2 method), run in cryoDRGN's own environment; the row of
a run from its per-epoch maps and log, and its full default schedule extrapolated to another N."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from peers_data import Dataset
from peers_env import run_limited
from peers_score import Row, score

# cryoDRGN defaults (4.3.1 --help): 30 epochs; abinit: 3 pose-search epochs then SGD epochs;
# abinit_homo_old: pose search every 5th epoch (epochs 1, 6, ..., 26), SGD on fixed poses between.
DRGN_EPOCHS = 30
DRGN_ABINIT_HPS_EPOCHS = 3
DRGN_HOMO_OLD_PS_EPOCHS = len(range(1, DRGN_EPOCHS + 1, 5))
DRGN_HPS_BATCH = 16  # pose-search batch size (both commands' default)
DRGN_PRETRAIN = 10000  # images of pretraining with random poses (both commands' default), at most one pass


def drgn_epoch_times(outdir: Path, t_start: float) -> dict[int, float]:
    """End time of each epoch (s after start) from the mtimes of reconstruct.<epoch>.mrc."""
    times = {}
    for p in outdir.glob("reconstruct.*.mrc"):
        m = re.fullmatch(r"reconstruct\.(\d+)\.mrc", p.name)
        if m:
            times[int(m.group(1))] = p.stat().st_mtime - t_start
    if (outdir / "pretrain.reconstruct.mrc").is_file():
        times.setdefault(0, (outdir / "pretrain.reconstruct.mrc").stat().st_mtime - t_start)
    return dict(sorted(times.items()))


def drgn_progress(log: Path) -> list[tuple[float, int, int]]:
    """(seconds since the first timestamped line, epoch, particles done) from cryoDRGN's log lines
    such as "(INFO) (abinit.py) (25-Nov-2026 03:17:22) # [Train Epoch: 0/30] [128/1000 particles]"."""
    out, t0 = [], None
    for line in log.read_text(errors="replace").splitlines():
        ts = re.search(r"\((\d\d-\w{3}-\d{4} \d\d:\d\d:\d\d)\)", line)
        if not ts:
            continue
        t = datetime.strptime(ts.group(1), "%d-%b-%Y %H:%M:%S").timestamp()
        t0 = t if t0 is None else t0
        m = re.search(r"Epoch:?\s*(\d+)(?:/\d+)?\]?\s*\[?(\d+)/\d+ (?:images|particles)", line)
        if m:
            out.append((t - t0, int(m.group(1)), int(m.group(2))))
    return out


def run_drgn(method: str, bindir: Path, sub: Path, ds: Dataset, n: int, workdir: Path, limit_s: float,
             epochs: int) -> Row:
    """cryoDRGN `abinit --zdim 0` or `abinit_homo_old` on the subset, under the time limit (a run
    already recorded in workdir/run.json is only read again)."""
    if (workdir / "run.json").is_file():
        return drgn_row(method, ds, n, workdir)
    outdir = workdir / "out"
    common = [str(sub / "particles.mrcs"), "--ctf", str(sub / "ctf.pkl"), "-o", str(outdir), "-n", str(epochs),
              "--seed", "0"]
    # a log line per pose-search batch (--log-interval = batch): the cost per image even if epoch 1 never ends
    if method == "drgn-abinit":
        cmd = [str(bindir / "cryodrgn"), "abinit", *common, "--zdim", "0", "--max-threads", "1", "--num-workers", "0",
               "--checkpoint", "1", "--log-interval", str(DRGN_HPS_BATCH), "--no-analysis"]
    else:  # abinit_homo_old has no thread option: OMP_NUM_THREADS=1 sets torch's
        cmd = [str(bindir / "cryodrgn"), "abinit_homo_old", *common, "--checkpoint", "1",
               "--log-interval", str(DRGN_HPS_BATCH)]
    t_start = time.time()
    wall, finished, rc = run_limited(cmd, workdir / "log.txt", limit_s)
    run = {"t_start": t_start, "wall_s": wall, "finished": finished, "rc": rc, "epochs": epochs,
           "log_every": DRGN_HPS_BATCH, "cmd": cmd}
    (workdir / "run.json").write_text(json.dumps(run, indent=1))
    return drgn_row(method, ds, n, workdir)


def drgn_row(method: str, ds: Dataset, n: int, workdir: Path) -> Row:
    """The row of a cryoDRGN run from its outputs (workdir/run.json, log.txt, out/)."""
    run = json.loads((workdir / "run.json").read_text())
    outdir, t_start, wall = workdir / "out", run["t_start"], run["wall_s"]
    row = Row(method, ds.name, n, wall_s=wall)
    row.status = "finished" if run["finished"] else ("stopped at the limit" if run["rc"] == -1 else f"failed (rc {run['rc']})")
    epochs_done = drgn_epoch_times(outdir, t_start)
    # per-epoch cost: epoch e took epochs_done[e] - epochs_done[e-1]; epoch 0 = pretraining
    dur = {e: t - epochs_done.get(e - 1, 0.0) for e, t in epochs_done.items()}
    search = {e for e in dur if e >= 1 and (e <= DRGN_ABINIT_HPS_EPOCHS if method == "drgn-abinit" else e % 5 == 1)}
    kinds = {"pretrain": [dur[e] for e in dur if e == 0], "pose search": [dur[e] for e in dur if e in search],
             "sgd": [dur[e] for e in dur if e >= 1 and e not in search]}
    row.per_epoch_s = {k: float(np.mean(v)) for k, v in kinds.items() if v}
    row.search_epochs_s = kinds["pose search"]
    if kinds["pose search"]:
        row.notes += f" pose-search epochs: {', '.join(f'{v:.0f} s' for v in kinds['pose search'])};"
    pre = re.search(r"Pretrain Epoch: 0 finished in (\d+):(\d\d):([\d.]+)", (workdir / "log.txt").read_text())
    if pre and "pretrain" in row.per_epoch_s:  # abinit logs it: split off the start-up (imports, loading)
        t_pre = int(pre.group(1)) * 3600 + int(pre.group(2)) * 60 + float(pre.group(3))
        row.per_epoch_s = {"start-up": row.per_epoch_s["pretrain"] - t_pre, "pretrain": t_pre,
                           **{k: v for k, v in row.per_epoch_s.items() if k != "pretrain"}}
    if "pose search" not in row.per_epoch_s:  # the first pose-search epoch did not finish: use the log
        prog = [(t, i) for t, e, i in drgn_progress(workdir / "log.txt") if e == 1]
        if len(prog) >= 2 and prog[-1][1] > prog[0][1]:
            per_img = (prog[-1][0] - prog[0][0]) / (prog[-1][1] - prog[0][1])
            row.per_epoch_s["pose search"] = per_img * n
            row.notes += (f" pose-search epoch cost = {n} × {per_img:.2f} s/image from the log "
                          f"({prog[-1][1]} images of epoch 1 done), epoch not completed;")
        elif 0 in epochs_done:  # not a single progress line: a lower bound
            k = run["log_every"] + DRGN_HPS_BATCH
            row.notes += (f" no pose-search progress line (due every {run['log_every']} particles, the first by "
                          f"{k}) by the limit: pose search > (wall {wall:.0f} s − pretrain end {epochs_done[0]:.0f} s)"
                          f" / {k} = {(wall - epochs_done[0]) / k:.1f} s per image;")
    if "pose search" in row.per_epoch_s:
        row.per_image_s = row.per_epoch_s["pose search"] / n
    # maps: the last one is the result; about 5 on the way give the time-to-resolution curve
    maps = sorted(outdir.glob("reconstruct.*.mrc"), key=lambda p: int(p.name.split(".")[1]))
    if (outdir / "reconstruct.mrc").is_file():
        maps.append(outdir / "reconstruct.mrc")
    for vol in maps[:-1][::max(1, len(maps) // 5)]:  # an aligned FSC costs ~15 s
        r = Row(method, ds.name, n)
        score(r, ds, vol, workdir)
        row.curve.append((vol.stat().st_mtime - t_start, r.res_px))
    if maps:
        score(row, ds, maps[-1], workdir)
        row.curve.append((maps[-1].stat().st_mtime - t_start, row.res_px))
        row.notes += f" map {maps[-1].name} after {max(epochs_done, default=-1)} of {run['epochs']} epochs;"
    return row


def extrapolate_drgn(row: Row, n_to: int) -> Row | None:
    """The full default schedule at `n_to` images from the measured per-epoch costs: epoch cost ∝ N,
    pretraining (one pass over min(N, 10,000) images with random poses) ∝ min(N, 10,000)."""
    pe = row.per_epoch_s
    if "pose search" not in pe:
        return None
    scale = n_to / row.n
    sgd = pe.get("sgd", 0.0)  # no SGD epoch measured: left out, so the figure is a lower bound
    if row.method == "drgn-abinit":
        n_ps, n_sgd = DRGN_ABINIT_HPS_EPOCHS, DRGN_EPOCHS - DRGN_ABINIT_HPS_EPOCHS
    else:
        n_ps, n_sgd = DRGN_HOMO_OLD_PS_EPOCHS, DRGN_EPOCHS - DRGN_HOMO_OLD_PS_EPOCHS
    # pose-search epochs not measured cost at least the last measured one (the searched radius L grows)
    k, last = len(row.search_epochs_s), (row.search_epochs_s or [pe["pose search"]])[-1]
    ps_total = k * pe["pose search"] + (n_ps - k) * last if k < n_ps else n_ps * pe["pose search"]
    pre = pe.get("start-up", 0.0) + pe.get("pretrain", 0.0) * min(n_to, DRGN_PRETRAIN) / min(row.n, DRGN_PRETRAIN)
    wall = pre + scale * (ps_total + n_sgd * sgd)
    formula = (f"T = start-up {pe.get('start-up', 0):.0f} s + pretrain {pe.get('pretrain', 0):.0f} s × "
               f"{min(n_to, DRGN_PRETRAIN)}/{min(row.n, DRGN_PRETRAIN)} "
               f"+ {n_to}/{row.n} × ({n_ps} pose-search epochs {ps_total:.0f} s "
               f"({min(k, n_ps)} measured, mean {pe['pose search']:.0f} s; the rest at the last measured "
               f"{last:.0f} s) + {n_sgd} × {sgd:.0f} s {'SGD' if 'sgd' in pe else 'SGD (not measured, so a lower bound)'} epoch)")
    status = "extrapolated" if "sgd" in pe and k >= n_ps else "extrapolated (lower bound)"
    return Row(row.method, row.dataset, n_to, wall_s=wall, per_image_s=row.per_image_s, per_epoch_s={},
               status=status, notes=f"{formula}; resolution not measured at this N")
