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
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import mrcfile
import numpy as np

from cryoai.geometry.rotations import euler_to_matrix
from cryoai.io.star import read_star

import peers_relion  # benchmarks/peers_relion.py, beside this script

HERE = Path(__file__).resolve().parent
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1"}
# pip commands per environment, in order (torch first so that pip takes the CPU build)
VENVS = {
    "cryodrgn": [["torch==2.13.0"], ["torch==2.13.0", "cryodrgn>=4,<5"]],
    "aspire": [["aspire"]],
}
VERSION_PACKAGES = {"cryodrgn": ["cryodrgn", "torch", "numpy"], "aspire": ["aspire", "numpy", "finufft"]}
# cryoDRGN defaults (4.3.1 --help): 30 epochs; abinit: 3 pose-search epochs then SGD epochs;
# abinit_homo_old: pose search every 5th epoch (epochs 1, 6, ..., 26), SGD on fixed poses between.
DRGN_EPOCHS = 30
DRGN_ABINIT_HPS_EPOCHS = 3
DRGN_HOMO_OLD_PS_EPOCHS = len(range(1, DRGN_EPOCHS + 1, 5))
DRGN_HPS_BATCH = 16  # pose-search batch size (both commands' default)
DRGN_PRETRAIN = 10000  # images of pretraining with random poses (both commands' default), at most one pass


# ---------------------------------------------------------------------------------------------
# environments


def run_env() -> dict[str, str]:
    """The environment for every child process: one thread, cryoai importable."""
    env = dict(os.environ, **ONE_THREAD)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def ensure_venv(name: str, home: Path) -> Path:
    """Create (once) the virtual environment `home/name` with the peer installed; → its bin folder."""
    venv = home / name
    bindir = venv / "bin"
    marker = venv / ".installed"
    if not marker.is_file():
        print(f"[peers] creating {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        for pkgs in VENVS[name]:
            subprocess.run([str(bindir / "python"), "-m", "pip", "install", "-q", *pkgs], check=True, env=run_env())
        marker.write_text(datetime.now().isoformat())
    return bindir


def package_versions(bindir: Path, names: list[str]) -> dict[str, str]:
    """Installed versions of `names` in the environment `bindir`."""
    code = ("import importlib.metadata as m, json, sys; "
            "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")
    out = subprocess.run([str(bindir / "python"), "-c", code, *names], check=True, text=True, capture_output=True)
    return json.loads(out.stdout)


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class Dataset:
    """A cryoai-simulated particle set with its truth."""
    folder: Path
    name: str
    box: int
    apix: float
    n: int

    @property
    def truth(self) -> Path:
        return self.folder / "truth.mrc"


def load_dataset(folder: Path) -> Dataset:
    """Read box, pixel size and count from `folder/particles.star` (RELION 3.1, one optics group)."""
    star = read_star(folder / "particles.star")
    optics = star["optics"].iloc[0]
    name = folder.parent.name if folder.name == "data" else folder.name
    return Dataset(folder, name, int(optics["rlnImageSize"]), float(optics["rlnImagePixelSize"]), len(star["particles"]))


def make_subset(ds: Dataset, n: int, out: Path) -> Path:
    """The first `n` particles as every peer reads them: particles.mrcs (float32), particles.star
    (RELION 3.1, renumbered), ctf.pkl and pose.pkl (cryoDRGN's pickles; /work/shared/data/README.md).

    ctf.pkl: (n, 9) float32 [D, Apix, dfU Å, dfV Å, dfang deg, kV, Cs mm, w, phase deg];
    pose.pkl: (R, t) with R the RELION matrix A (CONVENTIONS.md) and t = origin in px / D.
    The true poses are written only for checks (backprojection with known poses): no method
    below reads them.
    """
    out.mkdir(parents=True, exist_ok=True)
    if (out / "pose.pkl").is_file():
        return out
    star = read_star(ds.folder / "particles.star")
    optics, parts = star["optics"].iloc[0], star["particles"].iloc[:n].copy()
    # the simulator writes one stack in order: index i@particles.mrcs is row i
    idx = parts["rlnImageName"].str.split("@").str[0].astype(int).to_numpy() - 1
    with mrcfile.mmap(ds.folder / "particles.mrcs", permissive=True) as m:
        images = np.asarray(m.data[idx], dtype=np.float32)
    with mrcfile.new(out / "particles.mrcs", overwrite=True) as m:
        m.set_data(images)
        m.voxel_size = ds.apix
    parts["rlnImageName"] = [f"{i + 1:06d}@particles.mrcs" for i in range(n)]
    text = ["data_optics", "", "loop_"] + [f"_{c} #{i}" for i, c in enumerate(star["optics"].columns, 1)]
    text += ["\t".join(str(v) for v in star["optics"].iloc[0].to_list()), "", "", "data_particles", "", "loop_"]
    text += [f"_{c} #{i}" for i, c in enumerate(parts.columns, 1)]
    text += parts.to_csv(sep="\t", header=False, index=False, float_format="%.6f").splitlines()
    (out / "particles.star").write_text("\n".join(text) + "\n")

    D = ds.box
    phase = parts["rlnPhaseShift"].to_numpy() if "rlnPhaseShift" in parts else np.zeros(n)
    ctf = np.stack([np.full(n, D), np.full(n, ds.apix), parts["rlnDefocusU"], parts["rlnDefocusV"],
                    parts["rlnDefocusAngle"], np.full(n, optics["rlnVoltage"]),
                    np.full(n, optics["rlnSphericalAberration"]), np.full(n, optics["rlnAmplitudeContrast"]),
                    phase], axis=1).astype(np.float32)
    rot = euler_to_matrix(parts["rlnAngleRot"].to_numpy(), parts["rlnAngleTilt"].to_numpy(),
                          parts["rlnAnglePsi"].to_numpy()).astype(np.float32)
    trans = np.stack([parts["rlnOriginXAngst"], parts["rlnOriginYAngst"]], axis=1) / ds.apix / D
    with open(out / "ctf.pkl", "wb") as f:
        pickle.dump(ctf, f)
    with open(out / "pose.pkl", "wb") as f:
        pickle.dump((rot, trans.astype(np.float32)), f)
    return out


# ---------------------------------------------------------------------------------------------
# running and scoring


def run_limited(cmd: list[str], log: Path, limit_s: float, cwd: Path | None = None) -> tuple[float, bool, int]:
    """Run `cmd` (stdout+stderr → log) for at most `limit_s` seconds → (wall s, finished, return code).

    The command runs in its own process group, which is stopped (SIGTERM, then SIGKILL) at the limit.
    """
    print(f"[peers] $ {' '.join(cmd)}  (limit {limit_s / 60:.0f} min, log {log})", flush=True)
    t0 = time.time()
    with open(log, "w") as f:
        f.write(f"# {datetime.now().isoformat()} $ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=run_env(), start_new_session=True)
        try:
            rc = proc.wait(timeout=limit_s)
            finished = rc == 0
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc, finished = -1, False
    return time.time() - t0, finished, rc


def fit_map(src: Path, dst: Path, box: int, apix: float, src_apix: float | None = None) -> Path:
    """Copy a peer's map to `dst` at `box`³ voxels of `apix` Å: Fourier crop or zero-pad when the
    peer worked at another box (same physical extent: src_apix·src_box = apix·box), and the right
    voxel size in the header."""
    with mrcfile.open(src, permissive=True) as m:
        vol = np.asarray(m.data, dtype=np.float32).reshape(m.data.shape[-3:]).copy()  # ASPIRE: a stack of one
    n = vol.shape[0]
    if n != box:
        f = np.fft.fftshift(np.fft.fftn(vol))
        out = np.zeros((box,) * 3, dtype=complex)
        k = min(n, box)
        a, b = n // 2 - k // 2, box // 2 - k // 2  # centre index n//2 ↦ box//2
        out[b:b + k, b:b + k, b:b + k] = f[a:a + k, a:a + k, a:a + k]
        vol = np.real(np.fft.ifftn(np.fft.ifftshift(out))).astype(np.float32) * (box / n) ** 3
    with mrcfile.new(dst, overwrite=True) as m:
        m.set_data(vol)
        m.voxel_size = apix
    return dst


def fsc_vs_truth(truth: Path, volume: Path, prefix: Path) -> dict:
    """`cryoai fsc TRUTH MAP --align --json` → its JSON, plus `corr`: the real-space correlation of
    the aligned map with the truth (negative means the map has the wrong sign)."""
    cmd = [sys.executable, "-m", "cryoai.cli.main", "fsc", str(truth), str(volume), "--align", "--json", "-o", str(prefix)]
    res = json.loads(subprocess.run(cmd, check=True, text=True, capture_output=True, env=run_env()).stdout.strip().splitlines()[-1])
    with mrcfile.open(truth, permissive=True) as a, mrcfile.open(f"{prefix}_aligned.mrc", permissive=True) as b:
        res["corr"] = float(np.corrcoef(np.ravel(a.data), np.ravel(b.data))[0, 1])
    return res


@dataclass
class Row:
    """One line of the table."""
    method: str
    dataset: str
    n: int
    wall_s: float | None = None          # measured (or extrapolated, see status) wall time
    per_image_s: float | None = None     # seconds per image per epoch (the costliest kind of epoch)
    per_epoch_s: dict = field(default_factory=dict)  # kind of epoch → seconds
    res_px: float | None = None
    res_A: float | None = None
    status: str = ""                     # finished / stopped at the limit / extrapolated / failed
    notes: str = ""
    map: str = ""
    curve: list = field(default_factory=list)  # [(seconds, FSC=0.5 px), ...] for maps written on the way
    search_epochs_s: list = field(default_factory=list)  # cryoDRGN: each completed pose-search epoch (s)


def score(row: Row, ds: Dataset, vol: Path, workdir: Path, src_apix: float | None = None) -> None:
    """Fit `vol` to the dataset's box and voxel size, FSC it against the truth, fill the row."""
    fitted = fit_map(vol, workdir / f"{vol.stem}_fit.mrc", ds.box, ds.apix, src_apix)
    res = fsc_vs_truth(ds.truth, fitted, workdir / f"fsc_{vol.stem}")
    row.res_px, row.res_A, row.map = res["res_0.5_px"], res["res_0.5_A"], str(fitted)
    if res["corr"] < 0:
        row.notes += f" map has the wrong sign (corr {res['corr']:.2f} after alignment);"


# ---------------------------------------------------------------------------------------------
# cryoDRGN


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


# ---------------------------------------------------------------------------------------------
# ASPIRE


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


# ---------------------------------------------------------------------------------------------
# cryoai


def cryoai_row(run: Path, ds: Dataset, workdir: Path) -> Row:
    """A finished cryoai run: wall = first to last line of log.txt; FSC of volume.mrc and of each
    volumes/step_*.mrc at its elapsed_s (metrics.jsonl) for the time-to-resolution curve."""
    stamps = [datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S").timestamp()
              for line in (run / "log.txt").read_text().splitlines() if re.match(r"\d{4}-\d\d-\d\d ", line)]
    n = int(re.search(r"^n_particles: (\d+)", (run / "config.yaml").read_text(), re.M).group(1))
    row = Row("cryoai", ds.name, n, wall_s=stamps[-1] - stamps[0],
              status="finished", notes=f" run {run};")
    elapsed = {m["step"]: m["elapsed_s"] for m in map(json.loads, open(run / "metrics.jsonl")) if "elapsed_s" in m}
    for vol in sorted((run / "volumes").glob("step_*.mrc")):
        step = int(vol.stem.split("_")[1])
        r = Row("cryoai", ds.name, row.n)
        score(r, ds, vol, workdir)
        row.curve.append((elapsed.get(step, float("nan")), r.res_px))
    score(row, ds, run / "volume.mrc", workdir)
    row.per_image_s = row.wall_s / row.n
    train_s = max(elapsed.values(), default=0.0)  # the training steps: a fixed number (config `steps`), whatever N
    row.per_epoch_s = {"training (fixed steps)": train_s, "finish (all particles)": row.wall_s - train_s}
    return row


def extrapolate_cryoai(row: Row, n_to: int) -> Row:
    """cryoai at `n_to` images: training is a fixed number of steps, the finish (refinement rounds,
    the pass over every particle) is taken as ∝ N, an upper bound (part of it works on a fixed subset)."""
    train_s, finish_s = row.per_epoch_s["training (fixed steps)"], row.per_epoch_s["finish (all particles)"]
    wall = train_s + finish_s * n_to / row.n
    return Row(row.method, row.dataset, n_to, wall_s=wall, per_image_s=wall / n_to, status="extrapolated",
               notes=f"T = training {train_s:.0f} s + {n_to}/{row.n} × finish {finish_s:.0f} s; resolution not measured at this N")


def run_cryoai(ds: Dataset, sub: Path, n: int, workdir: Path, limit_s: float) -> Row:
    """Train cryoai with default settings on the subset, then score it like an existing run."""
    run = workdir / "run"
    cmd = [sys.executable, "-m", "cryoai.cli.main", "train", str(sub / "particles.star"), "-o", str(run), "--quiet",
           "--max-minutes", str(limit_s / 60)]
    run_limited(cmd, workdir / "log.txt", limit_s + 300)
    return cryoai_row(run, ds, workdir)


# ---------------------------------------------------------------------------------------------
# table


def fmt_time(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.0f} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h")


def table(rows: list[Row]) -> str:
    """The markdown table (one line per method × dataset × N), then the time-to-resolution curves."""
    lines = ["| method | dataset | N | wall | per image | FSC=0.5 vs truth | status / notes |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        res = f"{r.res_px:.2f} px ({r.res_A:.1f} Å)" if r.res_px is not None else ("no 0.5 crossing" if r.map else "–")
        per = f"{r.per_image_s * 1000:.1f} ms" if r.per_image_s is not None else "–"
        epochs = ", ".join(f"{k} epoch {fmt_time(v)}" for k, v in r.per_epoch_s.items()) if r.method.startswith("drgn") else ""
        notes = "; ".join(x for x in [r.status, epochs, r.notes.strip(" ;")] if x)
        lines.append(f"| {r.method} | {r.dataset} | {r.n} | {fmt_time(r.wall_s)} | {per} | {res} | {notes} |")
    curves = [r for r in rows if r.curve]
    if curves:
        lines += ["", "Time to resolution (maps written during the run; FSC=0.5 px vs truth):", ""]
        for r in curves:
            pts = ", ".join(f"{fmt_time(t)}: " + (f"{px:.2f}" if px is not None else "no 0.5 crossing") for t, px in r.curve)
            lines.append(f"- {r.method}, {r.dataset}, N={r.n}: {pts}")
    return "\n".join(lines)


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
                        method, sys.modules[__name__], ds, n, sub, workdir, limit, args, cryo_run, cwd)))
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


def write_outputs(out: Path, rows: list[Row], versions: dict, args) -> None:
    """Print the table and write OUT/peers.md and OUT/peers.json."""
    text = (f"# Peers benchmark ({datetime.now():%Y-%m-%d %H:%M}, one CPU thread, limit {args.minutes:g} min per run)\n\n"
            f"Versions: {json.dumps(versions)}\n\n{table(rows)}\n")
    print("\n" + text, flush=True)
    (out / "peers.md").write_text(text)
    (out / "peers.json").write_text(json.dumps({"versions": versions, "rows": [asdict(r) for r in rows]}, indent=1))


if __name__ == "__main__":
    main()
