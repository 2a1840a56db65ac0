"""Probe the warm start on a simulated set: median rotation error against the truth per stage.

    python benchmarks/warmstart_probe.py DIR      (DIR/particles.star, particles.mrcs; true poses)

Env: MS = max shift in px at box B (default 1), SEED (default 0), M (subset size, 1500), B (box, 16).
Errors are measured after registering to the truth (global rotation and hand). One thread.
"""

import os
import sys
import time

import mrcfile
import numpy as np
import roma
import starfile
import torch

torch.set_num_threads(1)
from cryoai.geometry.grids import fft2_centered, freq_grid_2d  # noqa: E402
from cryoai.geometry.rotations import euler_to_matrix  # noqa: E402
from cryoai.physics.ctf import CTFParams, ctf  # noqa: E402
from cryoai.train.warmstart import WarmStartConfig, warm_start  # noqa: E402

d = sys.argv[1]
M, b = int(os.environ.get("M", "1500")), int(os.environ.get("B", "16"))
st = starfile.read(d + "/particles.star")
df, op = st["particles"].iloc[:M], st["optics"].iloc[0]
M = len(df)
L, apix = int(op.rlnImageSize), float(op.rlnImagePixelSize)
imgs = torch.tensor(mrcfile.mmap(d + "/particles.mrcs").data[:M].copy())
s = L // 2 - b // 2
spec = fft2_centered(imgs)[:, s : s + b, s : s + b] / L
apix_b = apix * L / b
if "rlnDefocusU" in df:
    p = CTFParams(df.rlnDefocusU.to_numpy(float), df.rlnDefocusV.to_numpy(float), df.rlnDefocusAngle.to_numpy(float),
                  np.full(M, op.rlnVoltage), np.full(M, op.rlnSphericalAberration),
                  np.full(M, op.rlnAmplitudeContrast), np.zeros(M), np.zeros(M)).to_torch(torch.float64)
    c = ctf(freq_grid_2d(b).reshape(-1, 2) / apix_b, p).reshape(M, b, b)
else:
    c = torch.ones(M, b, b)
A = torch.tensor(euler_to_matrix(df.rlnAngleRot, df.rlnAngleTilt, df.rlnAnglePsi), dtype=torch.float32)
o = torch.tensor(np.stack([df.rlnOriginXAngst, df.rlnOriginYAngst], 1), dtype=torch.float32) / apix_b


def err(P, T):
    """Per-image angle (deg) after the best global rotation, for the better hand."""
    best = None
    for J in [torch.eye(3), torch.diag(torch.tensor([1.0, 1.0, -1.0]))]:
        Pj = J @ P @ J
        G = roma.special_procrustes((T.transpose(1, 2) @ Pj).sum(0))  # A' = A·Gᵀ
        e = torch.rad2deg(roma.rotmat_geodesic_distance(Pj, T @ G))
        if best is None or e.median() < best.median():
            best = e
    return best


def cb(R, t):
    e = err(R, A)
    print(f"   err {e.median().item():.1f}  within 10°: {(e < 10).float().mean().item():.2f}", flush=True)


t0 = time.time()
res = warm_start(spec, c, b, WarmStartConfig(max_shift_px=float(os.environ.get("MS", "1")),
                                             seed=int(os.environ.get("SEED", "0"))), callback=cb)
print("time", time.time() - t0)
e = err(res.rotations, A)
print("median err", e.median().item(), "frac<10", (e < 10).float().mean().item())
print("shift err px16", (res.origins_px - o).norm(dim=1).median().item(), o.norm(dim=1).median().item())
