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
from pathlib import Path

import numpy as np

from cryoai.eval.compare import compare_maps, load_map_pair
from cryoai.eval.fsc_files import write_fsc_files
from cryoai.io.mrc import write_map


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("map_a", help="reference map (MRC); with --align the other map is moved onto it")
    parser.add_argument("map_b", help="second map (MRC), same box and voxel size")
    parser.add_argument("--align", action="store_true", help="align B onto A (rotation, shift, hand) first")
    parser.add_argument("--mask", default=None, help="auto | sphere | MASK.mrc (default: no mask)")
    parser.add_argument("--apix", type=float, default=None, help="voxel size in Å (overrides the headers)")
    parser.add_argument("-o", "--output", default="fsc", help="output prefix for .txt/.png (default: fsc)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


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
