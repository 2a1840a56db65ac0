"""The warm start alone, as `cryoai train` runs it, at several subset sizes and boxes.

    python benchmarks/warmstart_sizes.py DIR [DIR ...] --sizes 1500,3000 --boxes 16,24 [--seeds 0,1]

DIR is a `cryoai simulate` folder (particles.star with the true poses, truth.star marking junk).
The inputs are the trainer's (TrainingData with the noise model: whitened spectra, CTF ×
whitening at the small box), the subset is drawn as the trainer draws it, and the warm start's
poses are scored against the truth on the true particles of the subset (junk left out), after
registration (global rotation and hand). Prints a table: seconds, median error, % within 10°/20°.
One thread, so the seconds are what one core of this machine gives.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from cryoai.data.noise_spectrum import noise_model
from cryoai.data.particles import load_particles
from cryoai.data.training_data import TrainingData
from cryoai.eval.poses import evaluate_poses
from cryoai.simulate import JUNK_KIND_COLUMN, TRUTH_STAR, read_junk_kinds
from cryoai.train.warmstart import WarmStartConfig, warm_start


def junk_mask(folder: Path, n: int) -> np.ndarray:
    """True for the junk rows of a simulation (truth.star's junk kind not "particle"); all False
    without a junk-kind column. Rows are in the order of particles.star, as the simulator writes both."""
    truth = folder / TRUTH_STAR
    table = read_junk_kinds(truth) if truth.is_file() else None
    if table is None:
        return np.zeros(n, bool)
    return table[JUNK_KIND_COLUMN].to_numpy() != "particle"


def scored_warm_start(data: TrainingData, junk: np.ndarray, size: int, box: int, seed: int,
                      **settings) -> tuple[float, dict]:
    """The warm start on ``size`` images drawn as the trainer draws them (``seed``), at ``box``,
    with ``WarmStartConfig`` ``settings``: its seconds and its pose errors on the true particles
    of the subset (``evaluate_poses``: median, within 10°/20°)."""
    rng = np.random.default_rng(seed)
    particles = data.particles
    subset = np.sort(rng.choice(len(particles), min(size, len(particles)), replace=False))
    spectra, filters = data.small_box_inputs(subset, box)
    t0 = time.time()
    res = warm_start(spectra, filters, box, WarmStartConfig(seed=seed, **settings), log=lambda s: None)
    secs = time.time() - t0
    good = ~junk[subset]
    return secs, evaluate_poses(res.rotations.double().numpy()[good], particles.rotations[subset][good])


def error_columns(secs: float, errors: dict) -> tuple:
    """A table row's last columns: seconds, median rotation error (°), % within 10° and 20°."""
    return secs, errors["rot_median_deg"], 100 * errors["frac_within_10deg"], 100 * errors["frac_within_20deg"]


def print_table(first: list[str], rows: list[tuple]) -> None:
    """A markdown table: the ``first`` columns as given, then ``error_columns``."""
    print("\n| " + " | ".join(first) + " | seconds | median rot (deg) | within 10° (%) | within 20° (%) |")
    print("|" + "---|" * (len(first) + 4))
    for r in rows:
        k = len(first)
        print("| " + " | ".join(map(str, r[:k])) + f" | {r[k]:.0f} | {r[k + 1]:.1f} | {r[k + 2]:.0f} | {r[k + 3]:.0f} |")


def whitened_data(folder: Path) -> tuple[TrainingData, np.ndarray]:
    """A simulation's TrainingData with the trainer's noise model, and its junk mask."""
    particles = load_particles(folder / "particles.star")
    data = TrainingData(particles, particles.box, particles.box)
    data.noise = noise_model(data, None, 0, lambda s: None)
    return data, junk_mask(folder, len(particles))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--sizes", default="1500")
    p.add_argument("--boxes", default="16")
    p.add_argument("--seeds", default="0")
    p.add_argument("--epochs", type=float, default=14.0, help="the stochastic EM's passes over the subset")
    p.add_argument("--batch", type=int, default=100, help="the stochastic EM's batch")
    p.add_argument("--rate", type=float, default=0.1, help="the stochastic EM's running-average rate")
    p.add_argument("--top-k", type=int, default=8, help="poses per image sharing its weight")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for folder in args.folders:
        data, junk = whitened_data(folder)
        for seed in map(int, args.seeds.split(",")):
            for size in map(int, args.sizes.split(",")):
                for b in map(int, args.boxes.split(",")):
                    secs, e = scored_warm_start(data, junk, size, b, seed, sgd_epochs=args.epochs,
                                                batch_size=args.batch, sgd_rate=args.rate, top_k=args.top_k)
                    rows.append((folder.parent.name or folder.name, seed, size, b, *error_columns(secs, e)))
                    print(f"{rows[-1][0]} seed {seed} M {size} b {b}: {secs:.0f} s, median {e['rot_median_deg']:.1f}°, "
                          f"{rows[-1][6]:.0f}% < 10°", flush=True)
    print_table(["set", "seed", "subset", "box"], rows)


if __name__ == "__main__":
    main()
