"""Find a point group's axes in a map and turn it onto RELION's standard orientation, or score
which cyclic and dihedral symmetries a map has (--check).

The group's axes are searched about the box centre (centre the particle first): a coarse
grid, then a local search (geometry: cryoai.eval.symmetry_search). The output is the input
turned by a rotation R, OUT(u) = IN(Rᵀu), so the group's axes lie where RELION puts them (Cn
about z, Dn with a two-fold on x, T, O, I = I2); the poses A of particles that made the input
map become A·Rᵀ. The symmetry score is the correlation of the map with its symmetrised copy
(spherical average removed): 1 for an exactly symmetric map. --check scores Cn and Dn
(n = 2 … --max-n) in any orientation, so a C1 reconstruction shows whether the particle has symmetry.
"""

from __future__ import annotations

import argparse

import numpy as np

from cryoai.errors import InputError

LIKELY = 0.85  # a score above this: the map looks symmetric under that group


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="map (MRC), the particle centred in the box")
    parser.add_argument("--symmetry", default=None,
                        help="point group to align: Cn, Dn, T, O, I (= I2), I1…I4 (RELION's names)")
    parser.add_argument("-o", "--output", default=None, help="the aligned map (MRC), written atomically")
    parser.add_argument("--symmetrise", action="store_true", help="write the aligned map averaged over the group")
    parser.add_argument("--check", action="store_true", help="score Cn and Dn (n = 2 … --max-n) instead of aligning")
    parser.add_argument("--max-n", type=int, default=12, help="largest n scored by --check (default 12)")


def _check(vol: np.ndarray, max_n: int) -> int:
    from cryoai.eval.symmetry_search import check_symmetry

    scores = check_symmetry(vol, max_n=max_n)
    print("group  score   axis (x, y, z) of the n-fold")
    for symbol, score, frame in scores:
        flag = "  *" if score >= LIKELY else ""
        print(f"{symbol:5s}  {score:5.3f}   ({frame[0, 2]:+.3f}, {frame[1, 2]:+.3f}, {frame[2, 2]:+.3f}){flag}")
    likely = [s for s, score, _ in scores if score >= LIKELY]
    if likely:
        best = max(likely, key=lambda s: (int(s[1:]) * (2 if s[0] == "D" else 1)))
        print(f"* score ≥ {LIKELY}: the map looks symmetric under {', '.join(likely)}; the largest is {best} "
              f"(align it with --symmetry {best}; check T, O, I with --symmetry)")
    else:
        print(f"no Cn or Dn (n ≤ {max_n}) scores ≥ {LIKELY}: the map looks asymmetric (C1)")
    return 0


def main(args: argparse.Namespace) -> int:
    from cryoai.geometry.symmetry import parse_symmetry
    from cryoai.io.mrc import read_map, write_map

    if args.check:
        if args.max_n < 2:
            raise InputError(f"--max-n {args.max_n}: give 2 or more")
        vol, _ = read_map(args.input)
        return _check(vol, args.max_n)
    if args.symmetry is None or args.output is None:
        raise InputError("align-symmetry needs --symmetry G and -o OUT.mrc (or --check to score Cn and Dn)")
    try:
        parse_symmetry(args.symmetry)
    except ValueError as e:
        raise InputError(str(e)) from None
    vol, apix = read_map(args.input)

    from cryoai.eval.map_symmetry import symmetrise_map
    from cryoai.eval.symmetry_search import align_symmetry
    from cryoai.geometry.rotations import matrix_to_euler

    aligned, fit = align_symmetry(vol, args.symmetry)
    if args.symmetrise:
        aligned = symmetrise_map(aligned, args.symmetry)
    write_map(args.output, aligned, apix)
    R = fit.rotation
    rot, tilt, psi = (float(np.asarray(a).ravel()[0]) for a in matrix_to_euler(R[None]))
    angle = np.rad2deg(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))
    print(f"symmetry {args.symmetry.strip().upper()}: score {fit.score:.3f} (1 = exactly symmetric)")
    print(f"rotation R (OUT(u) = IN(Rᵀu); poses A become A·Rᵀ), {angle:.1f}° in all, "
          f"RELION Euler angles (rot, tilt, psi) = ({rot:.2f}, {tilt:.2f}, {psi:.2f}):")
    for row in R:
        print("  " + "  ".join(f"{x:+.5f}" for x in row))
    print(f"wrote {args.output} (box {vol.shape[0]}, {apix:.4g} Å/px){', symmetrised' if args.symmetrise else ''}")
    return 0
