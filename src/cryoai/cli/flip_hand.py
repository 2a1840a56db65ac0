"""Mirror a map along z (flip its handedness), keeping the voxel size and the centre voxel.

OUT(x, y, z) = IN(x, y, −z) about the box centre: slice i becomes slice (L − i) mod L, so
voxel L/2 stays where RELION and ChimeraX expect the centre. The mirrored map's poses are
J·A·J with J = diag(1, 1, −1); the particle images and their origins are unchanged.
"""

from __future__ import annotations

import argparse


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="map to mirror (MRC)")
    parser.add_argument("output", help="mirrored map (MRC), written atomically")


def main(args: argparse.Namespace) -> int:
    from cryoai.eval.align import flip_hand  # imports torch: only when the command runs
    from cryoai.io.mrc import read_map, write_map

    vol, apix = read_map(args.input)
    write_map(args.output, flip_hand(vol), apix)
    print(f"wrote {args.output}: {args.input} mirrored along z (box {vol.shape[0]}, {apix:.4g} Å/px)")
    return 0
