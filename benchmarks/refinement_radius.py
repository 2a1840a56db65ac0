"""Rounds of the finish's reconstruct-and-refine from a run's poses, with the refinement limited
in different ways: how far out a round may compare at low SNR without fitting the noise.

    python benchmarks/refinement_radius.py DATA_DIR RUN_DIR [--start prior|final] [--modes r16,r11,wiener,gold] [--rounds 3]

DATA_DIR: a simulated set (particles.star with the true poses, truth.mrc), e.g. one that
benchmarks/reconstruction.py made; RUN_DIR: a finished ``cryoai train`` run on it. Its
checkpoint gives the settings, the noise model and the warm-start subset. ``--start prior``:
the subset's poses as the finish receives them (training's); ``final``: the run's particles.star,
on the same rows. Each mode runs ``--rounds`` rounds on the subset, as the finish's rounds
(one start, ``finish.predict``'s refinement):

- ``rN``: reconstruct from all rows, refine every pose against that map up to radius N
  (Fourier px of the training box; the finish uses r16 = box/4);
- ``wiener``: the same map, each shell weighted by 2·FSC/(1+FSC) (the Wiener filter of the full
  map from the FSC of its two random halves), refined up to box/4;
- ``gold``: each half refined against its own half map, weighted by the halves' FSC, up to box/4.

Each round prints the pose errors against the truth, the FSC of the two random halves (shared
refinement except in ``gold``) at shells 12/14/16/18 and FSC=0.5 of the full map against the
truth (after alignment). Two threads; it times nothing: the table is about accuracy.

Measured 2026-12-04, 4AKE 10k SNR 0.02 (``reconstruction.py --snr 0.02 --minutes 25``, seed 0;
the run: 4.98 px, the finish's 4 rounds at r16 took the map from 4.80 to 4.99 px), ``--start
prior`` (4000 rows, the warm-start subset's poses at 16.5° median; the true poses of the same
4000 images give 2.76 px):

| mode | round 1 | round 2 | round 3 | median rot after 3 (deg) | half-map FSC 12/14/16 after 3 |
|---|---|---|---|---|---|
| (start) | 4.86 px | | | 16.46 | 0.73 / 0.68 / 0.43 |
| r16 (the finish) | 5.14 | 5.23 | 5.26 | 16.84 | 0.79 / 0.80 / 0.57 |
| wiener | 5.15 | 5.25 | 5.30 | 16.93 | 0.80 / 0.80 / 0.53 |
| gold | 5.10 | 5.18 | 5.23 | 16.85 | 0.51 / 0.43 / 0.21 (independent) |
| r11 | 4.38 | 4.41 | 4.43 | 17.43 | 0.48 / 0.31 / 0.08 |

Refining up to shell 16 fits the noise there: the shared-pose FSC rises at 14-16 while the map
loses 0.4 px against the truth. Weighting the shells by the FSC does not stop it (the weight is
near 1 where the FSC is high, which is where the noise was fitted), nor do independent halves
with that weight. Only a lower radius does: r11 gives a better map (4.38 px) although its
median pose error is no better. From the run's final poses (``--start final``, all 10k rows,
2026-12-03): r16 4.98 → 4.98 px, r11 3.91, r8 3.93, r6 4.21.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cryoai.data.noise_spectrum import noise_model  # noqa: E402
from cryoai.data.particles import load_particles  # noqa: E402
from cryoai.data.training_data import TrainingData  # noqa: E402
from cryoai.eval.fsc import fsc, sphere_mask  # noqa: E402
from cryoai.eval.poses import evaluate_poses  # noqa: E402
from cryoai.geometry.grids import radius_grid_3d  # noqa: E402
from cryoai.io.mrc import write_map  # noqa: E402
from cryoai.physics.backprojection import spectrum_to_map  # noqa: E402
from cryoai.train import finish  # noqa: E402
from cryoai.train.config import config_from_dict  # noqa: E402
from cryoai.train.half_maps import split_halves  # noqa: E402
from cryoai.train.predict import predict_poses_sharded  # noqa: E402
from cryoai.train.trainer import build_models  # noqa: E402


def fsc_vs_truth(volume: Path, truth: Path) -> float:
    """FSC=0.5 (px) of ``volume`` against ``truth`` after alignment (``cryoai fsc --align``)."""
    cmd = [sys.executable, "-m", "cryoai.cli.main", "fsc", str(truth), str(volume), "--align", "--json",
           "-o", str(volume.with_suffix(""))]
    out = subprocess.run(cmd, check=True, text=True, capture_output=True).stdout
    return json.loads(out.strip().splitlines()[-1])["res_0.5_px"]


def shell_weights(weights: np.ndarray, size: int, oversample: int) -> torch.Tensor:
    """A (size,)*3 grid of per-shell ``weights`` (one per shell of the training box, 0 … box/2),
    interpolated at each voxel's radius of the oversampled spectrum."""
    radius = (radius_grid_3d(size) / oversample).clamp(max=len(weights) - 1)
    lo = radius.floor().long()
    hi = (lo + 1).clamp(max=len(weights) - 1)
    w = torch.from_numpy(np.asarray(weights, np.float32))
    return (1 - (radius - lo)) * w[lo] + (radius - lo) * w[hi]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path)
    p.add_argument("run", type=Path)
    p.add_argument("--start", choices=("prior", "final"), default="prior")
    p.add_argument("--modes", default="r16,r11,wiener,gold")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    truth = load_particles(str(args.data / "particles.star"))
    state = torch.load(args.run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    cfg = config_from_dict(state["config"])
    data = TrainingData(truth, cfg.train_box, cfg.encoder_box, invert=cfg.invert, seed=cfg.seed)
    if cfg.whiten:  # as the trainer does
        data.noise = noise_model(data, cfg.particle_diameter_A, cfg.seed, lambda line: None)
    _, volume = build_models(cfg, "cpu")
    box, oversample = cfg.train_box, volume.oversample
    rows = np.asarray(state["subset"])
    if args.start == "prior":
        start = state["subset_rot"].double().numpy(), state["subset_origin"].double().numpy() * data.apix
    else:
        final = load_particles(str(args.run / "particles.star"))
        start = final.rotations[rows], final.origins_A[rows]
    halves = [split_halves(len(rows), cfg.seed) == h for h in (1, 2)]
    every = np.ones(len(rows), bool)

    def spectrum(sel, poses):
        return finish.reconstruct(data, rows[sel], torch.from_numpy(poses[0][sel]).float(),
                                  torch.from_numpy(poses[1][sel] / data.apix).float(), oversample)

    def refine(sel, reference, radius, poses):
        """``poses`` with those of ``rows[sel]`` refined against ``reference`` up to ``radius``."""
        volume.load_spectrum(reference)  # known to ``radius``: refinement compares up to it (at most box/4)
        rot, origin = predict_poses_sharded(None, volume, data, radius, True, progress=False, indices=rows[sel],
                                            refine=True, start_poses=(poses[0][sel], poses[1][sel]), turns=1)
        out = poses[0].copy(), poses[1].copy()
        out[0][sel], out[1][sel] = rot, origin
        return out

    print(f"start: {args.start}, {len(rows)} rows\n")
    print("| mode | round | median rot (deg) | within 10 deg | half-map FSC at 12/14/16/18 | FSC=0.5 vs truth (px) |")
    print("|---|---|---|---|---|---|")
    for mode in args.modes.split(","):
        poses = start
        for k in range(args.rounds + 1):
            half = [spectrum(sel, poses) for sel in halves]
            curve = fsc(spectrum_to_map(half[0], box), spectrum_to_map(half[1], box), sphere_mask(box))
            full = spectrum(every, poses)
            out = args.run / f"refinement_radius_{mode}_{k}.mrc"
            write_map(out, spectrum_to_map(full, box), data.apix)
            e = evaluate_poses(poses[0], truth.rotations[rows], poses[1], truth.origins_A[rows], data.apix)
            print(f"| {mode} | {k} | {e['rot_median_deg']:.2f} | {e['frac_within_10deg']:.3f} | "
                  + " / ".join(f"{curve[s]:.2f}" for s in (12, 14, 16, 18))
                  + f" | {fsc_vs_truth(out, args.data / 'truth.mrc'):.2f} |", flush=True)
            if k == args.rounds:
                break
            f = np.clip(curve, 0, 0.999)
            if mode.startswith("r"):
                poses = refine(every, full, float(mode[1:]), poses)
            elif mode == "wiener":
                poses = refine(every, full * shell_weights(2 * f / (1 + f), len(full), oversample), box / 4, poses)
            elif mode == "gold":
                for sel, own in zip(halves, half):
                    poses = refine(sel, own * shell_weights(f, len(own), oversample), box / 4, poses)
            else:
                raise SystemExit(f"unknown mode {mode}: rN, wiener or gold")


if __name__ == "__main__":
    main()
