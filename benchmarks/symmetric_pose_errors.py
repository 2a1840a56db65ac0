"""Where a run's pose errors lie for a symmetric structure (written for the 3J9G runs of
``benchmarks/reconstruction.py``): poses registered under the point group, then for the
outliers (error > 20°) the error rotation in the image frame (P = R·A*ᵀ: an axis along z is an
in-plane turn, an axis in the plane a wrong tilt) and in the map frame (Q = Rᵀ·A*: a fixed
pseudo-symmetry would show as one axis and angle), and the median error against the tilt of the
view from the symmetry axis.

Usage: python benchmarks/symmetric_pose_errors.py RUN_DIR DATA_DIR [--symmetry C6]
(RUN_DIR/particles.star: predicted poses; DATA_DIR/particles.star: the truth)
"""

from __future__ import annotations

import argparse

import numpy as np
import roma
import torch

from cryoai.data.particles import load_particles
from cryoai.eval.poses import apply_registration, point_group, register_rotations


def axis_angle(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angles (deg) and unit axes of rotations (N, 3, 3)."""
    v = roma.rotmat_to_rotvec(torch.as_tensor(M)).numpy()
    norm = np.linalg.norm(v, axis=1)
    return np.rad2deg(norm), v / np.maximum(norm[:, None], 1e-9)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("data")
    p.add_argument("--symmetry", default="C6")
    args = p.parse_args()
    pred = load_particles(f"{args.run}/particles.star", datadir=args.data)
    truth = load_particles(f"{args.data}/particles.star")
    reg = register_rotations(pred.rotations, truth.rotations, symmetry=args.symmetry)
    R = apply_registration(pred.rotations, reg.G, reg.hand)
    copies = truth.rotations[None] @ np.swapaxes(point_group(args.symmetry), 1, 2)[:, None]  # A*·Sᵀ (K, N, 3, 3)
    k = np.einsum("nab,knab->kn", R, copies).argmax(0)
    nearest = copies[k, np.arange(len(k))]
    err = reg.errors_deg
    out = err > 20
    print(f"{args.symmetry}, hand {reg.hand}: median error {np.median(err):.1f}°, within 10° {np.mean(err <= 10):.1%}, "
          f"outliers (> 20°) {out.sum()} of {len(err)}")
    for name, M in (("image frame P = R·A*ᵀ", R @ np.swapaxes(nearest, 1, 2)), ("map frame Q = Rᵀ·A*", np.swapaxes(R, 1, 2) @ nearest)):
        ang, ax = axis_angle(M[out])
        print(f"\n{name}, outliers:")
        print(f"  angle (deg) histogram, bins 0 30 60 90 120 150 170 180: {np.histogram(ang, [0, 30, 60, 90, 120, 150, 170, 181])[0]}")
        print(f"  |axis z| < 0.2 (axis in the xy plane): {np.mean(np.abs(ax[:, 2]) < 0.2):.1%}")
    tilt = np.rad2deg(np.arccos(np.abs(nearest[:, 2, 2])))  # view direction (third row) against z
    print("\n| tilt from the symmetry axis (deg) | particles | median error (deg) | within 10° |")
    print("|---|---|---|---|")
    for lo in range(0, 90, 15):
        sel = (tilt >= lo) & (tilt < lo + 15)
        print(f"| {lo}–{lo + 15} | {sel.sum()} | {np.median(err[sel]):.1f} | {np.mean(err[sel] <= 10):.0%} |")


if __name__ == "__main__":
    main()
