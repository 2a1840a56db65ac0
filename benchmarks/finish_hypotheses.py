"""The finish's pose accuracy with and without the pose hypotheses and the global re-search.

    python benchmarks/finish_hypotheses.py train DATA_DIR RUN_DIR      # training loop only (fixed steps)
    python benchmarks/finish_hypotheses.py finish DATA_DIR RUN_DIR [--variants base,hyp,hyp+research]

DATA_DIR: a simulated set (particles.star with true poses, truth.mrc), e.g. one that
benchmarks/reconstruction.py made. ``train`` runs ``cryoai train``'s training loop with default
settings and a fixed step count (no --max-minutes, one thread, so the result does not depend on
what else runs on the machine) and stops before the finish, saving RUN_DIR/checkpoints/last.pt.
``finish`` runs the finish (train/finish.py) from that checkpoint once per variant and prints
the median rotation error, the fraction within 10°, and FSC=0.5 vs the truth (after alignment).

Measured 2026-12-01 (2-core CPU shared with other jobs, one thread: the seconds are only a rough
ratio): the first 3000 particles of benchmarks/reconstruction.py's L=64 sets, from states trained
3500 steps (whose volume was that run's final map), default finish (4 rounds, all 3000):

| set | variant | finish (s) | median rot (deg) | within 10 deg | FSC=0.5 vs truth (px) |
|---|---|---|---|---|---|
| 4AKE SNR 0.1 | base (turns 1, no re-search) | 470 | 7.17 | 0.582 | 3.07 |
| 4AKE SNR 0.1 | turns 4 + re-search 0.1 | 1476 | 4.66 | 0.797 | 2.73 |
| 8ZPM SNR 0.1 | base | 563 | 34.06 | 0.236 | 4.66 |
| 8ZPM SNR 0.1 | turns 4 + re-search 0.1 | 1822 | 12.47 | 0.425 | 3.64 |
| 4AKE noise-free | base | 161 | 0.69 | 0.943 | 2.11 |
| 4AKE noise-free | turns 4 + re-search 0.1 | 1345 | 0.57 | 0.998 | 2.11 |

Since then the turns apply to the encoder's poses only: a round refines from the last round's
poses with one start (the same 4.59° median as four on 4AKE 10k SNR 0.1, in a third of the
time), and the rounds run until the poses stop moving, so these rows describe the older finish.

Measured 2026-12-01, later (pairs at one thread each, nothing else beside them): the 10k SNR 0.05
sets of benchmarks/reconstruction.py, trained 2975 steps (stopped on the plateau), then the
default finish (``--variants default --prior --rounds 8``; the re-search ranks by the
projection's scale), with and without the warm-start subset starting from its training poses:

| set | prior | finish (s) | median rot (deg) | within 10 deg | FSC=0.5 vs truth (px) |
|---|---|---|---|---|---|
| 4AKE SNR 0.05 | no | 975 | 7.69 | 0.620 | 2.85 |
| 4AKE SNR 0.05 | yes (3596 of 4000 kept) | 1005 | 6.72 | 0.691 | 2.78 |
| 8ZPM SNR 0.05 | no | 956 | 11.30 | 0.459 | 3.39 |
| 8ZPM SNR 0.05 | yes (3471 of 4000 kept) | 984 | 8.10 | 0.577 | 3.22 |
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cryoai.data.noise_spectrum import noise_model  # noqa: E402
from cryoai.data.particles import load_particles  # noqa: E402
from cryoai.eval.poses import evaluate_poses  # noqa: E402
from cryoai.train import finish  # noqa: E402
from cryoai.train.config import TrainConfig, config_from_dict  # noqa: E402
from cryoai.train.run_dir import RunDir  # noqa: E402
from cryoai.data.training_data import TrainingData  # noqa: E402
from cryoai.io.mrc import write_map  # noqa: E402
from cryoai.models.volume_map import volume_to_map  # noqa: E402
from cryoai.train.schedule import loss_radius  # noqa: E402
from cryoai.train.trainer import Trainer, build_models  # noqa: E402

VARIANTS = {  # name: (in-plane starts, fraction re-searched per round)
    "base": (1, 0.0),
    "turns": (4, 0.0),
    "research": (1, 0.1),
    "turns+research": (4, 0.1),
    "research0.3": (1, 0.3),
    "default": (finish.TURNS, finish.FRACTION),  # what `cryoai train` runs
}


def fsc_vs_truth(volume: Path, truth: Path, out_prefix: Path) -> float:
    cmd = [sys.executable, "-m", "cryoai.cli.main", "fsc", str(truth), str(volume), "--align", "--json", "-o", str(out_prefix)]
    out = subprocess.run(cmd, check=True, text=True, capture_output=True).stdout
    return json.loads(out.strip().splitlines()[-1])["res_0.5_px"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("train", "finish"))
    p.add_argument("data", type=Path)
    p.add_argument("run", type=Path)
    p.add_argument("--checkpoint", type=Path, help="the trained state (default RUN/checkpoints/last.pt)")
    p.add_argument("--variants", default="base,turns,research,turns+research")
    p.add_argument("--prior", action="store_true",
                   help="also run each variant starting the warm-start subset from its training poses (finish.first_poses)")
    p.add_argument("--rounds", type=int, help="at most this many rounds (default: the config's)")
    args = p.parse_args()
    torch.set_num_threads(1)
    particles = load_particles(str(args.data / "particles.star"))
    cfg = TrainConfig()
    if args.mode == "train":
        trainer = Trainer(particles, cfg, RunDir(str(args.run), quiet=True), progress=False)
        trainer.fit(finish=False)
        return
    print("| variant | prior | finish (s) | median rot (deg) | within 10 deg | FSC=0.5 vs truth (px) |")
    print("|---|---|---|---|---|---|")
    state = torch.load(args.checkpoint or args.run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    cfg = config_from_dict(state["config"])  # the settings it was trained with (and the boxes it chose)
    data = TrainingData(particles, cfg.train_box, cfg.encoder_box, invert=cfg.invert, seed=cfg.seed)
    if cfg.whiten:  # as the trainer does (Trainer.__init__)
        data.noise = noise_model(data, cfg.particle_diameter_A, cfg.seed, lambda line: None)
    subset = np.asarray(state["subset"])
    prior = (subset, (state["subset_rot"].double().numpy(), state["subset_origin"].double().numpy() * data.apix))
    runs = [(name, with_prior) for name in args.variants.split(",") for with_prior in ((False, True) if args.prior else (False,))]
    for name, with_prior in runs:
        turns, research = VARIANTS[name]
        encoder, volume = build_models(cfg, "cpu")
        encoder.load_state_dict(state["encoder"])
        volume.load_state_dict(state["volume"])
        how = finish.PoseSettings(loss_radius(cfg, state.get("position", 1.0)), cfg.loss == "symmetric",
                                  turns=turns, research_fraction=research)
        t0 = time.time()
        rot, _ = finish.final_map_and_poses(encoder, volume, data, how, cfg.final_subset,
                                            args.rounds or cfg.final_iterations, cfg.seed, log=print,
                                            prior=prior if with_prior else None)
        seconds = time.time() - t0
        name = name + ("+prior" if with_prior else "")
        out = args.run / f"finish_{name}.mrc"
        write_map(out, volume_to_map(volume, cfg.train_box).numpy(), data.apix)
        e = evaluate_poses(rot, particles.rotations)
        res = fsc_vs_truth(out, args.data / "truth.mrc", args.run / f"fsc_{name}")
        print(f"| {name} | {with_prior} | {seconds:.0f} | {e['rot_median_deg']:.2f} | {e['frac_within_10deg']:.3f} | {res:.2f} |", flush=True)


if __name__ == "__main__":
    main()
