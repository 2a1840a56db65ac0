"""Reconstruct a map and every particle's pose ab initio (warm start, encoder, volume).

PARTICLES is a RELION STAR (3.0 or 3.1+), a cryoSPARC .cs or a bare .mrcs (with --apix and,
for a CTF, --ctf-*). Writes OUT/volume.mrc, OUT/particles.star (RELION 3.1, a pose for every
particle, every input column kept), OUT/log.txt, OUT/metrics.jsonl, OUT/config.yaml and
OUT/checkpoints/last.pt, OUT/report.html. With --halves, two independent half-set runs
(OUT/half1, OUT/half2), OUT/volume_half{1,2}.mrc, OUT/fsc.txt/png and rlnRandomSubset in
OUT/particles.star. One run at a time in OUT (OUT/.lock).

Ctrl-C saves a checkpoint at the current step and exits (code 130); `--resume` continues from
the last checkpoint with the run's settings (OUT/config.yaml): of the options only --max-minutes,
--workers, --compile, --quiet, --device and those that read PARTICLES may then change.

Example: cryoai train sim/particles.star -o run1 --max-minutes 20

Several GPUs or nodes (data parallel, each rank a share of every batch; see the README):
torchrun --nproc_per_node 4 -m cryoai train sim/particles.star -o run1
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

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
                        help="wall-time limit of the whole run (warm start and finish included): each stage is sized to fit; "
                             "without --steps/--epochs training goes on while the half-set resolution improves")
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
    parser.add_argument("--symmetry", help="point group (RELION's: Cn, Dn, T, O, I): trained modulo it in RELION's "
                                           "orientation (warm start over its asymmetric unit, symmetrised maps); the "
                                           "map and the poses (asymmetric unit) written in that orientation; default C1")
    parser.add_argument("--no-warm-start", action="store_true",
                        help="no projection-matching warm start: encoder and volume learn from scratch (with "
                             "--volume fouriernet, the closest to cryoAI's published method)")
    parser.add_argument("--invert", action="store_true", help="negate images (molecule dark, e.g. not contrast-inverted at extraction)")
    parser.add_argument("--particle-diameter-A", type=float, metavar="D",
                        help="particle diameter (Å): the noise spectrum is estimated outside this circle (default 0.75 × the box)")
    parser.add_argument("--no-whiten", action="store_true",
                        help="no noise model: compare data and model unweighted (as if the noise were white)")
    parser.add_argument("--seed", type=int, help="default 0")
    parser.add_argument("--halves", action="store_true",
                        help="gold standard: two independent half-set reconstructions, half maps and their FSC")
    parser.add_argument("--keep", type=_keep_option, metavar="auto|all|FRACTION",
                        help="the final map from the particles that fit: auto (default; a threshold on the fit "
                             "scores when they are bimodal, else all), all, or the best FRACTION; every particle "
                             "stays in particles.star with its score and rlnSelected 1 (kept) or 0")
    parser.add_argument("--classes", type=int, metavar="K",
                        help="K > 1: K classes after the finish (heterogeneous refinement), rlnClassNumber and "
                             "OUT/volume_class{k}.mrc")
    parser.add_argument("--resume", action="store_true", help="continue OUT from checkpoints/last.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or log on the terminal")


def _keep_option(value: str) -> str:
    """--keep, checked (``train/scores.parse_keep``) and stored as given."""
    from cryoai.train.scores import parse_keep

    try:
        parse_keep(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: give auto, all or a fraction in (0, 1], e.g. 0.8") from None
    return value


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


# Options that fix what a checkpoint holds or the order the data are drawn in: config field → option.
FIXED_OPTIONS = {"train_box": "--train-box", "volume": "--volume", "loss": "--loss", "seed": "--seed",
                 "batch_size": "--batch-size", "steps": "--steps", "precision": "--precision",
                 "invert": "--invert", "warm_start": "--no-warm-start", "whiten": "--no-whiten",
                 "particle_diameter_A": "--particle-diameter-A"}


def apply_options(cfg, args: argparse.Namespace, n_particles: int, box: int):
    """``cfg`` (a TrainConfig) with the options given on the command line applied, the boxes
    fitted to the images' ``box``."""
    from cryoai.geometry.symmetry import parse_symmetry
    from cryoai.train.config import fit_to_box

    given = {"batch_size": args.batch_size, "train_box": args.train_box, "volume": args.volume, "loss": args.loss,
             "seed": args.seed, "max_minutes": args.max_minutes, "invert": args.invert or None,
             "workers": args.workers, "precision": args.precision, "compile": args.compile or None,
             "warm_start": False if args.no_warm_start else None, "steps": args.steps,
             "symmetry": getattr(args, "symmetry", None), "keep": args.keep, "classes": args.classes,
             "whiten": False if args.no_whiten else None, "particle_diameter_A": args.particle_diameter_A}
    if args.classes is not None and args.classes < 1:
        raise InputError(f"--classes {args.classes}: give the number of classes, 1 or more")
    for key, value in given.items():
        if value is not None:
            setattr(cfg, key, value)
    if args.epochs is not None and args.steps is None:
        cfg.steps = max(1, int(args.epochs * n_particles / cfg.batch_size))
    try:
        parse_symmetry(cfg.symmetry)
    except ValueError as e:
        raise InputError(f"--symmetry: {e}") from None
    if args.max_minutes is not None:  # a time limit without a step count: train while it improves
        cfg.train_past_steps = args.steps is None and args.epochs is None
    return fit_to_box(cfg, box)


def resumed_config(args: argparse.Namespace, saved: dict, particles):
    """The run's TrainConfig from its config.yaml ``saved``, with the options that may change on
    a resume applied; InputError (one line, before anything is written) when the particles or an
    option given would change what the checkpoint holds or the data order."""
    from dataclasses import replace

    from cryoai.train.config import changed_fields, config_from_dict, fit_to_box

    n, box, apix = saved.get("n_particles"), saved.get("box"), saved.get("apix")
    if n is not None and box is not None and apix is not None and (
            (n, box) != (len(particles), particles.box) or abs(particles.apix - apix) > 1e-3 * apix):
        raise InputError(f"{args.particles}: {len(particles)} particles of {particles.box} px at {particles.apix:.3f} Å/px, "
                         f"but the run in {args.out} was started on {n} of {box} px at {apix:.3f} Å/px "
                         f"({saved.get('particles')}); give that run's particles, or start a new run in another -o")
    run = fit_to_box(config_from_dict(saved["config"]), particles.box)  # older runs saved the unfitted boxes
    cfg = apply_options(replace(run), args, len(particles), particles.box)
    changed = [k for k in changed_fields(run.to_dict(), cfg) if k in FIXED_OPTIONS]  # not encoder_box, which follows
    if changed:
        options = " ".join(sorted({"--epochs" if k == "steps" and args.steps is None else FIXED_OPTIONS[k] for k in changed}))
        was = ", ".join(f"{k} {getattr(run, k)}" for k in changed)
        raise InputError(f"{options}: the run in {args.out} was started with {was} and its checkpoint holds that; "
                         f"drop {options} to resume it, or start a new run in another -o")
    return cfg


def resume_command(args: argparse.Namespace) -> str:
    """The command that continues this run: the particles' options and --resume (the run's
    settings come from OUT/config.yaml)."""
    parts = ["cryoai", "train", args.particles, "-o", args.out]
    for option, value in (("--apix", args.apix), ("--datadir", args.datadir), ("--cache", args.cache),
                          ("--ctf-defocus-A", args.ctf_defocus_A)):
        if value is not None:
            parts += [option, str(value)]
    if args.ctf_defocus_A is not None:
        parts += ["--ctf-voltage-kV", str(args.ctf_voltage_kV), "--ctf-cs-mm", str(args.ctf_cs_mm),
                  "--ctf-amp-contrast", str(args.ctf_amp_contrast)]
    if args.device != "auto":
        parts += ["--device", args.device]
    return shlex.join(parts + ["--resume"])


def main(args: argparse.Namespace) -> int:
    import time

    from cryoai.train import distributed

    args.started = time.time()  # --max-minutes counts from here
    device = distributed.init(pick_device(args.device))  # joins torchrun's ranks, if launched by it
    try:
        return _train(args, device)
    finally:
        distributed.cleanup()


def _lock(out: str) -> str | None:
    """Take OUT/.lock (rank 0 alone under torchrun; every rank stops if it cannot)."""
    from cryoai.train import distributed
    from cryoai.train.run_dir import take_lock

    error, note = None, None
    if distributed.is_main():
        try:
            note = take_lock(out)
        except InputError as e:
            error = e
    if distributed.from_main(0.0 if error else 1.0) == 0.0:
        raise error or InputError(f"{out}: rank 0 could not lock the run folder")
    return note


def _train(args: argparse.Namespace, device: str) -> int:
    from cryoai.train.config import default_config
    from cryoai.train.distributed import is_main
    from cryoai.train.run_dir import read_run_config, release_lock

    particles = load_input(args)
    if args.resume:
        saved = read_run_config(args.out)
        cfg = resumed_config(args, saved, particles)
        halves = bool(saved.get("halves", (Path(args.out) / "half1").is_dir()))  # older runs lack the key
        if args.halves and not halves:
            raise InputError(f"--halves: the run in {args.out} is a single reconstruction; "
                             "drop --halves to resume it, or start a new run in another -o")
    else:
        saved, halves = None, args.halves
        cfg = apply_options(default_config(particles.box, device), args, len(particles), particles.box)
    if args.cache:
        from cryoai.data.cache import attach_cache

        particles = attach_cache(particles, args.cache, cfg.train_box)
    note = _lock(args.out)
    try:
        return _run(args, device, particles, cfg, halves, saved, note)
    finally:
        if is_main():
            release_lock(args.out)


def _run(args: argparse.Namespace, device: str, particles, cfg, halves: bool, saved: dict | None,
         lock_note: str | None) -> int:
    """Train in the locked OUT: a new run writes config.yaml, a resumed one records the resume."""
    from cryoai.train.checkpoint import Interrupted
    from cryoai.train.distributed import is_main, world_size
    from cryoai.train.run_dir import RunDir
    from cryoai.train.trainer import Trainer

    run = RunDir(args.out, quiet=args.quiet)
    try:
        if lock_note:
            run.log(lock_note)
        checkpoint = (Path(args.out) / "checkpoints" / "last.pt").is_file()
        trainer = None  # a single run's Trainer, made first: it refuses a bad checkpoint before config.yaml is touched
        if not halves:
            if args.resume and not checkpoint:
                run.log("no checkpoint yet (stopped before the first): starting from step 0")
            trainer = Trainer(particles, cfg, run, device=device, resume=args.resume and checkpoint,
                              progress=not args.quiet, started=getattr(args, "started", None))
        if saved is None:
            run.write_config(cfg.to_dict(), {"particles": str(args.particles), "n_particles": len(particles),
                                             "box": particles.box, "apix": particles.apix, "device": device,
                                             "world_size": world_size(), "halves": halves})
        else:
            run.record_resume({"device": device, "world_size": world_size()})
            run.log(f"resumed the run started {saved.get('started')}, with its settings (config.yaml)")
        run.log(f"{len(particles)} particles, box {particles.box}, {particles.apix:.3f} Å/px, "
                f"CTF {'yes' if particles.ctf is not None else 'no'}; training at box {cfg.train_box} on {device}"
                + (f" × {world_size()} ranks (data parallel, global batch {cfg.batch_size})" if world_size() > 1 else "")
                + (f"; images from the cache {args.cache}" if args.cache else ""))
        try:
            if trainer is not None:
                trainer.fit()
            else:
                from cryoai.train.halves import train_halves

                train_halves(particles, cfg, run, device, args.resume, progress=not args.quiet)
        except KeyboardInterrupt as e:
            where = f" at step {e.step}" if isinstance(e, Interrupted) else ""
            run.log(f"interrupted{where}; continue with: {resume_command(args)}", always_print=True)
            return 130
        if not is_main():
            return 0
        from cryoai.report.html import write_report

        report = write_report(run.path)
        run.log(f"report: {report}")
        return 0
    finally:
        run.close()
