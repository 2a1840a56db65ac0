"""Simulate a particle set with ground-truth poses from a map or an atomic model.

Writes DIR/particles.mrcs, DIR/particles.star (RELION 3.1, optics, CTF, true angles and origins:
what a user's STAR would hold), DIR/truth.mrc (the map the images were made from, voxel size =
--apix), DIR/truth.star (each row's junk kind, the defocus that made it, its contrast scale and
B-factor) and, with coloured noise, DIR/truth_noise_spectrum.txt (shell, power).
Without --map or --model, the built-in phantom molecule is used.

Example: cryoai simulate --model 4AKE.pdb --n 10000 --box 64 --apix 2.5 --snr 0.1 --shift-std-A 5 -o sim
Realistic: ... --junk-fraction 0.2 --bfactor 80 --contrast-sd 0.25 --noise-spectrum ice
           --defocus-error-A 150 --preferred-view 0,90 --preferred-fraction 0.3 --preferred-spread-deg 20
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
    real = parser.add_argument_group("realism (each recorded in DIR/truth.star)")
    real.add_argument("--junk-fraction", type=float, default=0.0,
                      help="fraction of the picks that are junk (default 0)")
    real.add_argument("--junk-kinds", default="ice,empty,fragment,neighbour",
                      help="kinds of junk, drawn uniformly: ice (blob clusters), empty (noise only), fragment "
                           "(part of the molecule), neighbour (a copy entering at the box edge)")
    real.add_argument("--neighbour-fraction", type=float, default=0.0,
                      help="fraction of the true particles with a second copy entering at the box edge (default 0)")
    real.add_argument("--bfactor", type=float, default=0.0, help="envelope exp(−B s²/4) on every image, B in Å² (default 0)")
    real.add_argument("--contrast-sd", type=float, default=0.0,
                      help="per-particle amplitude scale 1 + S·N(0,1), clipped positive (default 0)")
    real.add_argument("--noise-spectrum", default="white",
                      help="white | ice (5× the power at low frequency) | FILE of two columns: frequency (1/Å), "
                           "relative power; the total noise variance per pixel follows --snr")
    real.add_argument("--defocus-error-A", type=float, default=0.0,
                      help="the STAR's defocus U and V = the true ones + N(0, E) Å (default 0)")
    real.add_argument("--preferred-view", default=None, metavar="ROT,TILT",
                      help="a preferred viewing direction (degrees)")
    real.add_argument("--preferred-fraction", type=float, default=0.0,
                      help="fraction of views within --preferred-spread-deg of --preferred-view (default 0)")
    real.add_argument("--preferred-spread-deg", type=float, default=20.0, help="half-angle of the preferred cone (default 20)")
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


def noise_shape(spec: str, box: int, apix: float):
    """The relative noise spectrum p[r] asked by --noise-spectrum, or None for white."""
    import numpy as np

    from cryoai.physics.noise import ice_spectrum, spectrum_from_table

    if spec == "white":
        return None
    if spec == "ice":
        return ice_spectrum(box, apix)
    try:
        table = np.loadtxt(spec, ndmin=2)
    except (OSError, ValueError) as e:
        raise InputError(f"--noise-spectrum {spec}: not white, ice or a readable two-column text file ({e})") from None
    if table.shape[1] != 2 or len(table) < 1 or not np.all(np.isfinite(table)) or np.any(table[:, 1] <= 0):
        raise InputError(f"--noise-spectrum {spec}: give two columns, frequency (1/Å) and a positive relative power")
    return spectrum_from_table(table[:, 0], table[:, 1], box, apix)


def realism(args: argparse.Namespace, volume):
    """The Realism record of the command line (fragments from the atomic model when there is one)."""
    import numpy as np

    from cryoai.junk import JUNK_KINDS
    from cryoai.simulate import Realism, model_fragments

    kinds = tuple(k.strip() for k in args.junk_kinds.split(",") if k.strip())
    if not kinds or any(k not in JUNK_KINDS for k in kinds):
        raise InputError(f"--junk-kinds {args.junk_kinds}: choose among {','.join(JUNK_KINDS)}")
    for name in ("junk_fraction", "preferred_fraction", "neighbour_fraction"):
        if not 0 <= getattr(args, name) <= 1:
            raise InputError(f"--{name.replace('_', '-')} {getattr(args, name)}: give a fraction in [0, 1]")
    for name in ("bfactor", "contrast_sd", "defocus_error_A", "preferred_spread_deg"):
        if getattr(args, name) < 0:
            raise InputError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be ≥ 0")
    view = None
    if args.preferred_view is not None:
        try:
            rot, tilt = (float(v) for v in args.preferred_view.split(","))
        except ValueError:
            raise InputError(f"--preferred-view {args.preferred_view}: give ROT,TILT in degrees, e.g. 0,90") from None
        view = (rot, tilt)
    elif args.preferred_fraction > 0:
        raise InputError("--preferred-fraction needs --preferred-view ROT,TILT")
    fragments = None
    if args.model and args.junk_fraction > 0 and "fragment" in kinds:
        fragments = model_fragments(args.model, args.box, args.apix, 8, np.random.default_rng([args.seed, 2]))
    return Realism(junk_fraction=args.junk_fraction, junk_kinds=kinds, fragments=fragments, bfactor_A2=args.bfactor,
                   contrast_sd=args.contrast_sd, noise_psd=noise_shape(args.noise_spectrum, args.box, args.apix),
                   defocus_error_A=args.defocus_error_A, preferred_view=view,
                   preferred_fraction=args.preferred_fraction, preferred_spread_deg=args.preferred_spread_deg,
                   neighbour_fraction=args.neighbour_fraction)


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
        realism=realism(args, volume),
    )
    dt = time.perf_counter() - t0
    junk = f", {summary['n_junk']} of them junk" if summary["n_junk"] else ""
    print(f"wrote {args.n} particles{junk} ({args.box} px, {args.apix} Å/px, SNR {snr:g}, noise σ "
          f"{summary['noise_sigma']:.4g}, {args.noise_spectrum} noise) to {args.out} in {dt:.1f} s "
          f"({args.n / dt:.0f} images/s)")
    return 0
