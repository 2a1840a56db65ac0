"""Preprocess particles once into a cache that `cryoai train --cache` and `cryoai predict --cache` read.

Images are Fourier-cropped to the training box, normalised as training does (mean and standard
deviation of a fixed sample) and stored as float16 (float32 if float16 would lose more than
1e-3 relative RMS) in CACHE_DIR/images.npy, with CACHE_DIR/cache.json describing them. Written
in chunks (constant memory) into a temporary folder renamed into place when complete.

Example: cryoai preprocess particles.star -o particles_cache64 && cryoai train particles.star --cache particles_cache64 -o run1
"""

from __future__ import annotations

import argparse
import time

from cryoai.cli.train import add_particle_args


def add_args(parser: argparse.ArgumentParser) -> None:
    add_particle_args(parser)
    parser.add_argument("-o", "--out", required=True, help="cache folder to write")
    parser.add_argument("--box", type=int, help="training box in px (default min(L, 64), as `cryoai train` on a CPU)")
    parser.add_argument("--chunk", type=int, default=512, help="images processed per chunk (memory ∝ chunk)")
    parser.add_argument("--quiet", action="store_true")


def main(args: argparse.Namespace) -> int:
    from cryoai.cli.train import load_input
    from cryoai.data.cache import write_cache
    from cryoai.errors import InputError

    if args.box is not None and args.box < 8:
        raise InputError(f"--box {args.box}: give a box of at least 8 px")
    if args.chunk < 1:
        raise InputError(f"--chunk {args.chunk}: give a positive number of images")
    t0 = time.perf_counter()
    particles = load_input(args)
    cache = write_cache(particles, args.out, args.box, chunk=args.chunk, progress=not args.quiet,
                        log=(lambda s: None) if args.quiet else print)
    dt = time.perf_counter() - t0
    m = cache.meta
    print(f"cached {m['n']} particles at {m['box']} px ({m['apix']:.3f} Å/px, {m['dtype']}; float16 relative RMS "
          f"error {m['float16_rel_rms_error']:.2e}) in {dt:.1f} s ({m['n'] / dt:.0f} images/s) → {args.out}")
    return 0
