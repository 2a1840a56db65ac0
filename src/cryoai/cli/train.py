"""Reconstruct a map and every particle's pose ab initio (warm start, encoder, volume).

PARTICLES is a RELION STAR (3.0 or 3.1+), a cryoSPARC .cs or a bare .mrcs (with --apix and,
for a CTF, --ctf-*). Writes OUT/volume.mrc, OUT/particles.star (RELION 3.1, a pose for every
particle, every input column kept), OUT/log.txt, OUT/metrics.jsonl, OUT/config.yaml and
OUT/checkpoints/last.pt, OUT/report.html; `--resume` continues from the last checkpoint. With --halves, two
independent half-set runs (OUT/half1, OUT/half2), OUT/volume_half{1,2}.mrc, OUT/fsc.txt/png
and rlnRandomSubset in OUT/particles.star.

Example: cryoai train sim/particles.star -o run1 --max-minutes 20

Several GPUs or nodes (data parallel, each rank a share of every batch; see the README):
torchrun --nproc_per_node 4 -m cryoai train sim/particles.star -o run1
"""

from __future__ import annotations

import argparse

from cryoai.errors import InputError


def add_particle_args(parser: argparse.ArgumentParser) -> None:
    """Options to read particles, shared with `cryoai predict`."""
    parser.add_argument("particles", help="particles: .star, .cs or .mrcs")
    parser.add_argument("--apix", type=float, help="pixel size in Å (overrides the file)")
    parser.add_argument("--datadir", help="folder the image paths are relative to")
    parser.add_argument("--ctf-defocus-A", type=float, help="bare .mrcs: defocus (Å) for every image")
    parser.add_argument("--ctf-voltage-kV", type=float, default=300.0, help="bare .mrcs: voltage (kV)")
    parser.add_argument("--ctf-cs-mm", type=float, default=2.7, help="bare .mrcs: spherical aberration (mm)")
    parser.add_argument("--ctf-amp-contrast", type=float, default=0.1, help="bare .mrcs: amplitude contrast")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if present")


def add_cache_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", metavar="CACHE_DIR",
                        help="read images from a `cryoai preprocess` cache of PARTICLES (same box) instead of the stacks")


def add_args(parser: argparse.ArgumentParser) -> None:
    add_particle_args(parser)
    add_cache_arg(parser)
    parser.add_argument("-o", "--out", required=True, help="run directory")
    parser.add_argument("--max-minutes", type=float,
                        help="wall-time limit of the whole run (warm start and finish included); the schedule is compressed to fit")
    parser.add_argument("--steps", type=int, help="optimisation steps (default from box and device)")
    parser.add_argument("--epochs", type=float, help="passes over the data (sets --steps)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--precision", choices=["fp32", "bf16"],
                        help="bf16: the encoder's CNN in bfloat16 (mixed precision, for GPUs that have it); default fp32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoder (first steps slower)")
    parser.add_argument("--workers", type=int,
                        help="processes reading the next batches ahead (default 0 on the CPU, 4 on a GPU; none under torchrun)")
    parser.add_argument("--train-box", type=int, help="Fourier-crop images to this box for training")
    parser.add_argument("--volume", choices=["voxel", "fouriernet"], help="volume model (default voxel)")
    parser.add_argument("--loss", choices=["symmetric", "l2"], help="default symmetric")
    parser.add_argument("--no-warm-start", action="store_true",
                        help="no projection-matching warm start: encoder and volume learn from scratch (with "
                             "--volume fouriernet, the closest to cryoAI's published method)")
    parser.add_argument("--invert", action="store_true", help="negate images (molecule dark, e.g. not contrast-inverted at extraction)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--halves", action="store_true",
                        help="gold standard: two independent half-set reconstructions, half maps and their FSC")
    parser.add_argument("--resume", action="store_true", help="continue OUT from checkpoints/last.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or log on the terminal")


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is visible; use --device cpu or install a CUDA build of torch")
    return name


def load_input(args: argparse.Namespace):
    from cryoai.data.particles import load_particles

    ctf = None
    if args.ctf_defocus_A is not None:
        ctf = {"defocus_u_A": args.ctf_defocus_A, "defocus_v_A": args.ctf_defocus_A, "defocus_angle_deg": 0.0,
               "voltage_kV": args.ctf_voltage_kV, "cs_mm": args.ctf_cs_mm, "amp_contrast": args.ctf_amp_contrast}
    particles = load_particles(args.particles, apix=args.apix, datadir=args.datadir, ctf=ctf)
    if particles.box < 8:
        raise InputError(f"{args.particles}: images of {particles.box} px are too small to reconstruct")
    return particles


def main(args: argparse.Namespace) -> int:
    from cryoai.train import distributed

    device = distributed.init(pick_device(args.device))  # joins torchrun's ranks, if launched by it
    try:
        return _train(args, device)
    finally:
        distributed.cleanup()


def _train(args: argparse.Namespace, device: str) -> int:
    from cryoai.train.config import default_config
    from cryoai.train.distributed import is_main, world_size
    from cryoai.train.run_dir import RunDir
    from cryoai.train.trainer import Trainer

    particles = load_input(args)
    cfg = default_config(particles.box, device, batch_size=args.batch_size, train_box=args.train_box,
                         volume=args.volume, loss=args.loss, seed=args.seed, max_minutes=args.max_minutes,
                         invert=args.invert or None, workers=args.workers, precision=args.precision,
                         compile=args.compile or None)
    if args.no_warm_start:
        cfg.warm_start = False
    if args.epochs is not None:
        cfg.steps = max(1, int(args.epochs * len(particles) / cfg.batch_size))
    if args.steps is not None:
        cfg.steps = args.steps
    if args.cache:
        from cryoai.data.cache import attach_cache

        particles = attach_cache(particles, args.cache, cfg.train_box)
    run = RunDir(args.out, quiet=args.quiet)
    run.write_config(cfg.to_dict(), {"particles": str(args.particles), "n_particles": len(particles),
                                     "box": particles.box, "apix": particles.apix, "device": device,
                                     "world_size": world_size()})
    run.log(f"{len(particles)} particles, box {particles.box}, {particles.apix:.3f} Å/px, "
            f"CTF {'yes' if particles.ctf is not None else 'no'}; training at box {cfg.train_box} on {device}"
            + (f" × {world_size()} ranks (data parallel, global batch {cfg.batch_size})" if world_size() > 1 else "")
            + (f"; images from the cache {args.cache}" if args.cache else ""))
    if args.halves:
        from cryoai.train.halves import train_halves

        train_halves(particles, cfg, run, device, args.resume, progress=not args.quiet)
    else:
        Trainer(particles, cfg, run, device=device, resume=args.resume, progress=not args.quiet).fit()
    if not is_main():
        return 0
    from cryoai.report.html import write_report

    report = write_report(run.path)
    run.log(f"report: {report}")
    run.close()
    return 0
