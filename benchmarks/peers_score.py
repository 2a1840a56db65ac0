"""The results of benchmarks/peers.py: one table row per run, and its scoring against the truth
(a peer's map fitted to the data set's box and voxel size, then `cryoai fsc TRUTH MAP --align`)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import mrcfile
import numpy as np

from peers_data import Dataset
from peers_env import run_env


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


def score(row: Row, ds: Dataset, vol: Path, workdir: Path, src_apix: float | None = None) -> None:
    """Fit `vol` to the dataset's box and voxel size, FSC it against the truth, fill the row."""
    fitted = fit_map(vol, workdir / f"{vol.stem}_fit.mrc", ds.box, ds.apix, src_apix)
    res = fsc_vs_truth(ds.truth, fitted, workdir / f"fsc_{vol.stem}")
    row.res_px, row.res_A, row.map = res["res_0.5_px"], res["res_0.5_A"], str(fitted)
    if res["corr"] < 0:
        row.notes += f" map has the wrong sign (corr {res['corr']:.2f} after alignment);"
