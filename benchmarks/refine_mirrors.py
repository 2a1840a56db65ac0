"""Final reconstruct-and-refine rounds from given poses, with and without the mirror hypotheses.

    python benchmarks/refine_mirrors.py POSES.star TRUTH.star [--rounds 2]

POSES.star: poses of a run (e.g. RUN/particles.star); TRUTH.star: the simulated set with its
true poses. Each round reconstructs the map from the current poses (as train/finish.py does)
and refines every pose against it (train/refine.py); pose errors after each round, one thread.
"""

import argparse
import time

import numpy as np
import starfile
import torch

from cryoai.data.particles import load_particles
from cryoai.eval.poses import evaluate_poses
from cryoai.geometry.rotations import euler_to_matrix
from cryoai.models.voxel import VoxelVolume
from cryoai.train import hypotheses, predict, refine
from cryoai.data.training_data import TrainingData
from cryoai.train.finish import reconstruct


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("poses")
    p.add_argument("truth")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    particles = load_particles(args.truth)
    table = starfile.read(args.poses)["particles"]
    start_rot = euler_to_matrix(table.rlnAngleRot, table.rlnAngleTilt, table.rlnAnglePsi)
    start_origin = np.stack([table.rlnOriginXAngst, table.rlnOriginYAngst], 1)
    data = TrainingData(particles, 64, 32)
    rows = np.arange(len(particles))
    print("| mirrors | round | seconds | median rot (deg) | within 5 deg | within 20 deg |")
    print("|---|---|---|---|---|---|")
    for mirrors in (False, True):
        hypotheses.refine_poses = lambda *a, mirrors=mirrors, **k: refine.refine_poses(*a, **k, mirrors=mirrors)
        rot, origin = start_rot, start_origin
        volume = VoxelVolume(data.train_box, 2)
        for it in range(args.rounds):
            t0 = time.time()
            volume.load_spectrum(reconstruct(data, rows, torch.from_numpy(rot).float(),
                                             torch.from_numpy(origin / data.apix).float(), 2))
            rot, origin = predict.predict_poses(None, volume, data, data.train_box * predict.REFINE_RADIUS,
                                                progress=False, start_poses=(rot, origin), turns=1)
            e = evaluate_poses(rot, particles.rotations)
            print(f"| {mirrors} | {it + 1} | {time.time() - t0:.0f} | {e['rot_median_deg']:.2f} | "
                  f"{e['frac_within_5deg']:.3f} | {e['frac_within_20deg']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
