"""Predict every particle's pose with a trained encoder (eval mode, streaming, batched).

RUN is a `cryoai train` output folder; PARTICLES may be the training set or new data of the
same kind (same pixel size after cropping to the training box). Writes a RELION 3.1 STAR
with rlnAngleRot/Tilt/Psi and rlnOriginX/YAngst, every input column kept; for a cryoSPARC .cs
input also a .cs beside it (same stem) with alignments3D/pose, shift and psize_A.

Example: cryoai predict run1 more_particles.star -o run1/more_poses.star

Under torchrun (e.g. `torchrun --nproc_per_node 4 -m cryoai predict …`) each rank predicts a
contiguous share of the particles and rank 0 writes the STAR file.
"""

from __future__ import annotations

import argparse
import time

from cryoai.cli.train import add_cache_arg, add_particle_args, load_input, pick_device
from cryoai.errors import InputError


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a cryoai train output folder (uses RUN/checkpoints/last.pt)")
    add_particle_args(parser)
    add_cache_arg(parser)
    parser.add_argument("-o", "--out", required=True, help="output STAR file (and OUT.cs for a .cs input)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--no-refine", action="store_true",
                        help="encoder poses only, without the local refinement against the map (faster, coarser)")
    parser.add_argument("--workers", type=int,
                        help="processes reading the next batches ahead (default 0 on the CPU, 4 on a GPU; none under torchrun)")
    parser.add_argument("--quiet", action="store_true")


def main(args: argparse.Namespace) -> int:
    from cryoai.train import distributed

    t0 = time.perf_counter()
    device = distributed.init(pick_device(args.device))  # joins torchrun's ranks, if launched by it
    try:
        return _predict(args, device, t0)
    finally:
        distributed.cleanup()


def _predict(args: argparse.Namespace, device: str, t0: float) -> int:
    import torch

    from cryoai.data.particle_export import write_particle_files
    from cryoai.data.training_data import TrainingData
    from cryoai.train.checkpoint import load_checkpoint
    from cryoai.train.config import TrainConfig, default_config
    from cryoai.train.distributed import is_main, world_size
    from cryoai.train.predict import predict_poses_sharded
    from cryoai.train.schedule import loss_radius
    from cryoai.train.trainer import build_models

    if str(args.out).lower().endswith(".cs"):
        raise InputError(f"-o {args.out}: give the STAR file to write (e.g. poses.star); for a .cs input the .cs "
                         f"is written beside it")
    state = load_checkpoint(f"{args.run}/checkpoints/last.pt")
    cfg = TrainConfig(**{k: v for k, v in state["config"].items() if k in TrainConfig.__dataclass_fields__})
    particles = load_input(args)
    if args.cache:
        from cryoai.data.cache import attach_cache

        particles = attach_cache(particles, args.cache, cfg.train_box)
    data = TrainingData(particles, cfg.train_box, cfg.encoder_box, invert=cfg.invert)
    if data.train_box != cfg.train_box or abs(data.apix - state["apix"]) > 0.01 * state["apix"]:
        raise InputError(f"{args.particles}: {data.train_box} px at {data.apix:.3f} Å/px after cropping, but the model in "
                         f"{args.run} was trained at {cfg.train_box} px, {state['apix']:.3f} Å/px; re-extract or resample the particles")
    if state["config"].get("whiten", False):  # as in training (older runs did not whiten): the spectrum of these particles
        from cryoai.data.noise_spectrum import noise_model

        data.noise = noise_model(data, cfg.particle_diameter_A, seed=cfg.seed)
    encoder, volume = build_models(cfg, device)
    encoder.load_state_dict(state["encoder"])
    volume.load_state_dict(state["volume"])
    march = loss_radius(cfg, state.get("position", state["step"] / max(cfg.steps, 1)))
    workers = default_config(particles.box, device).workers if args.workers is None else args.workers
    with torch.no_grad():
        rot, origin = predict_poses_sharded(encoder, volume, data, march, cfg.loss == "symmetric", args.batch_size,
                                            device, progress=not args.quiet, refine=not args.no_refine, workers=workers)
    if not is_main():
        return 0
    written = write_particle_files(args.out, particles, rot, origin)
    dt = time.perf_counter() - t0
    ranks = f" on {world_size()} ranks" if world_size() > 1 else ""
    print(f"predicted {len(particles)} poses{ranks} in {dt:.1f} s ({len(particles) / dt:.0f} images/s, "
          f"start-up included) → {', '.join(map(str, written))}")
    return 0
