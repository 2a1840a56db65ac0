"""Fourier shell correlation between two maps, optionally after aligning the second onto the first.

Prints the resolution at FSC = 0.5 (against a known truth) and 0.143 (between half maps) in Å
and pixels, writes PREFIX.txt (a RELION-style data_fsc STAR table: rlnSpectralIndex,
rlnResolution in 1/Å, rlnAngstromResolution, rlnFourierShellCorrelation) and PREFIX.png.
With --align, B is superposed onto A over rotations, shifts and the mirror hand first (an ab
initio map has an arbitrary frame and may be the mirror image) and PREFIX_aligned.mrc is
written. --mask: auto (from the maps), sphere (soft sphere) or a mask MRC file.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from cryoai.errors import InputError
from cryoai.eval.fsc import fsc, make_mask, resolution, shell_frequencies
from cryoai.io.atomic import atomic_path
from cryoai.io.mrc import read_map, write_map
from cryoai.io.star import write_star


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("map_a", help="reference map (MRC); with --align the other map is moved onto it")
    parser.add_argument("map_b", help="second map (MRC), same box and voxel size")
    parser.add_argument("--align", action="store_true", help="align B onto A (rotation, shift, hand) first")
    parser.add_argument("--mask", default=None, help="auto | sphere | MASK.mrc (default: no mask)")
    parser.add_argument("--apix", type=float, default=None, help="voxel size in Å (overrides the headers)")
    parser.add_argument("-o", "--output", default="fsc", help="output prefix for .txt/.png (default: fsc)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def load_map_pair(path_a: str, path_b: str, apix: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Read two maps that must share box and voxel size → (a, b, apix in Å)."""
    a, apix_a = read_map(path_a)
    b, apix_b = read_map(path_b)
    if a.shape != b.shape:
        raise InputError(f"{path_a} has box {a.shape[0]} but {path_b} has box {b.shape[0]}; "
                         f"resample one map to the other's box and voxel size")
    if apix is None:
        if apix_a > 0 and apix_b > 0 and abs(apix_a - apix_b) > 1e-3 * max(apix_a, apix_b):
            raise InputError(f"{path_a} has voxel size {apix_a:.4g} Å but {path_b} has {apix_b:.4g} Å; "
                             f"resample one map (or pass --apix if a header is wrong)")
        apix = apix_a if apix_a > 0 else apix_b
    if not apix or apix <= 0:
        raise InputError(f"{path_a}, {path_b}: no voxel size in the headers; pass --apix in Å")
    return a, b, float(apix)


def compare_maps(ref: np.ndarray, mov: np.ndarray, apix: float, align: bool = False,
                 mask: str | None = None, init: tuple[np.ndarray, str] | None = None,
                 global_search: bool = True) -> dict:
    """FSC of ``ref`` and ``mov`` (aligned onto ``ref`` first when ``align``) → results dict.

    Keys: ``res_0.5_A``, ``res_0.143_A``, ``res_0.5_px``, ``res_0.143_px`` (None when the
    curve starts below the threshold), ``hand``, ``rotation`` (G, 3x3 list), ``shift_px``
    ((x, y, z) voxels), ``align_score``, and (not JSON) ``fsc`` (per shell), ``aligned``.
    """
    G, shift, hand, score = np.eye(3), np.zeros(3), "same", None
    if align:
        from cryoai.eval.align import align_maps

        al = align_maps(ref, mov, apix, init=init, global_search=global_search)
        G, shift, hand, score, mov = al.rotation, al.shift, al.hand, al.score, al.aligned
    curve = fsc(ref, mov, make_mask(mask, [ref, mov], apix))
    L = ref.shape[0]
    out: dict = {}
    for t in (0.5, 0.143):
        res_A, res_px = resolution(curve, t, L, apix)
        out[f"res_{t}_A"] = res_A if math.isfinite(res_A) else None
        out[f"res_{t}_px"] = res_px if math.isfinite(res_px) else None
    out.update(hand=hand, rotation=np.asarray(G).tolist(), shift_px=np.asarray(shift).tolist(),
               align_score=score, fsc=curve, aligned=mov)
    return out


def write_fsc_files(prefix: str, curve: np.ndarray, box: int, apix: float, title: str = "") -> tuple[Path, Path]:
    """PREFIX.txt (STAR data_fsc) and PREFIX.png (FSC vs 1/Å, Å tick labels), written atomically."""
    freq = shell_frequencies(box, apix)
    with np.errstate(divide="ignore"):
        ang = np.where(freq > 0, 1.0 / np.where(freq > 0, freq, 1.0), 999.0)
    table = pd.DataFrame({"rlnSpectralIndex": np.arange(len(curve)), "rlnResolution": freq,
                          "rlnAngstromResolution": ang, "rlnFourierShellCorrelation": curve})
    txt, png = Path(f"{prefix}.txt"), Path(f"{prefix}.png")
    write_star(txt, {"fsc": table})

    from cryoai.report.plots import fsc_curve

    with atomic_path(png) as tmp:
        tmp.write_bytes(fsc_curve(curve, freq, title))
    return txt, png


def _fmt(res_A, res_px) -> str:
    return "never above the threshold" if res_A is None else f"{res_A:.2f} Å ({res_px:.2f} px)"


def main(args: argparse.Namespace) -> int:
    a, b, apix = load_map_pair(args.map_a, args.map_b, args.apix)
    result = compare_maps(a, b, apix, align=args.align, mask=args.mask)
    L = a.shape[0]
    title = f"{Path(args.map_a).name} vs {Path(args.map_b).name}" + (" (aligned)" if args.align else "")
    txt, png = write_fsc_files(args.output, result["fsc"], L, apix, title)
    written = [str(txt), str(png)]
    if args.align:
        aligned_path = f"{args.output}_aligned.mrc"
        write_map(aligned_path, result["aligned"], apix)
        written.append(aligned_path)
    report = {k: v for k, v in result.items() if k not in ("fsc", "aligned")}
    if args.json:
        report.update(box=L, apix=apix, files=written)
        print(json.dumps(report))
        return 0
    print(f"FSC {args.map_a} vs {args.map_b}: box {L}, {apix:.4g} Å/px, mask {args.mask or 'none'}")
    if args.align:
        angle = np.rad2deg(np.arccos(np.clip((np.trace(np.asarray(result['rotation'])) - 1) / 2, -1, 1)))
        shift = ", ".join(f"{s:.2f}" for s in result["shift_px"])
        print(f"alignment: hand {result['hand']}, rotation {angle:.1f}°, shift ({shift}) px, "
              f"correlation {result['align_score']:.3f}")
    print(f"FSC = 0.5:   {_fmt(result['res_0.5_A'], result['res_0.5_px'])}")
    print(f"FSC = 0.143: {_fmt(result['res_0.143_A'], result['res_0.143_px'])}")
    print(f"wrote {', '.join(written)}")
    return 0
