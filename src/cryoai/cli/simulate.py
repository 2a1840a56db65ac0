"""Simulate a particle set with ground-truth poses from a map or an atomic model.

Writes DIR/particles.mrcs, DIR/particles.star (RELION 3.1, optics, CTF, true angles and origins)
and DIR/truth.mrc (the map the images were made from, voxel size = --apix).
Without --map or --model, the built-in phantom molecule is used.

Example: cryoai simulate --model 4AKE.pdb --n 10000 --box 64 --apix 2.5 --snr 0.1 --shift-std-A 5 -o sim
"""

from __future__ import annotations

import argparse
import math
import time

from cryoai.errors import InputError


def add_args(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--map", help="MRC map to project (resampled to --box/--apix)")
    src.add_argument("--model", help="PDB or mmCIF atomic model (converted with gemmi)")
    parser.add_argument("--map-apix", type=float, help="voxel size of --map in Å when its header is wrong")
    parser.add_argument("--n", type=int, default=10000, help="number of particles (default 10000)")
    parser.add_argument("--box", type=int, default=64, help="image size in pixels (default 64)")
    parser.add_argument("--apix", type=float, default=2.5, help="pixel size in Å (default 2.5)")
    parser.add_argument("--snr", default="inf", help="signal-to-noise ratio (CONVENTIONS.md), or 'inf' for none")
    parser.add_argument("--shift-std-A", type=float, default=0.0, help="std of the random origins in Å")
    parser.add_argument("--no-ctf", action="store_true", help="no CTF (and no defocus columns)")
    parser.add_argument("--defocus-A", type=float, default=15000.0, help="median defocus in Å")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", required=True, help="output folder")


def load_volume(args: argparse.Namespace):
    """The map to simulate from, at --box and --apix."""
    from cryoai.io.mrc import read_map
    from cryoai.phantom import phantom_map
    from cryoai.simulate import model_to_map, resample_map

    if args.model:
        return model_to_map(args.model, args.box, args.apix)
    if args.map:
        vol, header_apix = read_map(args.map)
        apix_in = args.map_apix or header_apix
        if apix_in <= 0:
            raise InputError(f"{args.map}: the header gives no voxel size; pass --map-apix")
        return resample_map(vol, apix_in, args.box, args.apix)
    return phantom_map(args.box, args.apix)


def main(args: argparse.Namespace) -> int:
    from cryoai.simulate import Microscope, simulate

    try:
        snr = math.inf if str(args.snr).lower() in ("inf", "none") else float(args.snr)
    except ValueError:
        raise InputError(f"--snr {args.snr}: give a positive number or 'inf'") from None
    if not snr > 0:
        raise InputError(f"--snr {args.snr}: must be positive or 'inf'")
    if args.n < 1 or args.box < 8:
        raise InputError("--n must be ≥ 1 and --box ≥ 8")
    volume = load_volume(args)
    t0 = time.perf_counter()
    summary = simulate(
        volume, args.apix, args.n, args.out, snr=snr, shift_std_A=args.shift_std_A,
        use_ctf=not args.no_ctf, seed=args.seed, scope=Microscope(defocus_median_A=args.defocus_A),
    )
    dt = time.perf_counter() - t0
    print(f"wrote {args.n} particles ({args.box} px, {args.apix} Å/px, SNR {snr:g}, noise σ "
          f"{summary['noise_sigma']:.4g}) to {args.out} in {dt:.1f} s ({args.n / dt:.0f} images/s)")
    return 0
