"""Write OUT/report.html (one self-contained page) and OUT/view.cxc for a training run.

The page summarises the data, settings, wall time and outcome, and shows the loss over time,
slices and projections of the map and of snapshots taken during training, the distribution
of viewing directions, psi and shift histograms, and, when the input STAR carries
ground-truth poses, the pose errors. With --truth (or a truth.mrc beside the input STAR, as
`cryoai simulate` writes) it adds the FSC of the map against the truth after alignment.
Figures are inlined, so the file can be copied or mailed on its own. view.cxc opens the map
in ChimeraX at a contour level enclosing the brightest 2 % of voxels.
"""

from __future__ import annotations

import argparse


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="OUT", help="output folder of `cryoai train`")
    parser.add_argument("--truth", metavar="MAP", default=None,
                        help="ground-truth map (MRC) to compare with (default: truth.mrc beside the input STAR)")


def main(args: argparse.Namespace) -> int:
    from cryoai.report.html import write_report  # imports matplotlib: only when the command runs

    path = write_report(args.run, truth_map=args.truth)
    print(f"wrote {path}")
    if (path.parent / "view.cxc").is_file():
        print(f"3D view: chimerax {path.parent / 'view.cxc'}")
    return 0
