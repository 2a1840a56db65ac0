"""Compare predicted poses (and optionally a map) with the ground truth, after registration.

Particles are matched by rlnImageName (cryoSPARC .cs: blob/idx and blob/path), exactly or
else by image index and stack file name. Ab initio poses live in an arbitrary frame and maybe
the mirror hand, so one global rotation G and the hand are fitted robustly first
(R = A·Gᵀ, or J·A·J·Gᵀ for the mirror); the errors are measured after that, for a symmetric
truth map (--symmetry) to the nearest of its symmetry-equivalent poses. Origins are
compared as they are (rotating or mirroring the map changes no image). With --map and
--truth-map the predicted map is aligned onto the truth (initialised from the pose
registration, plus a global search) and the FSC = 0.5 / 0.143 resolutions are reported.
Junk rows are left out of the pose errors when a simulation's truth.star (its junk kinds) sits
beside the --truth or the poses STAR, or is given with --junk-truth; their number is reported.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from cryoai.errors import InputError


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("poses", help="predicted poses: RELION .star or cryoSPARC .cs")
    parser.add_argument("--truth", required=True, help="ground-truth poses (.star or .cs) of the same particles")
    parser.add_argument("--map", default=None, help="predicted map (MRC); needs --truth-map")
    parser.add_argument("--truth-map", default=None, help="ground-truth map (MRC), same box and voxel size")
    parser.add_argument("--symmetry", default="C1",
                        help="point group of the truth map in RELION's orientation: Cn (about z), Dn (adds a two-fold about x), T, O, "
                             "I (= I2), I1…I4; default C1")
    parser.add_argument("--mask", default=None, help="FSC mask: auto | sphere | MASK.mrc (default: none)")
    parser.add_argument("--apix", type=float, default=None, help="pixel size in Å (overrides the metadata)")
    parser.add_argument("--junk-truth", default=None,
                        help="a simulation's truth.star whose junk rows to leave out (default: a truth.star beside "
                             "--truth or the poses, when there is one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def main(args: argparse.Namespace) -> int:
    from cryoai.data.matching import match_particles, particle_keys
    from cryoai.data.particles import load_particles
    from cryoai.eval.poses import evaluate_poses, point_group

    try:
        point_group(args.symmetry)
    except ValueError as e:
        raise InputError(str(e)) from None
    if (args.map is None) != (args.truth_map is None):
        raise InputError("--map and --truth-map go together; give both maps or neither")
    pred = load_particles(args.poses, apix=args.apix)
    truth = load_particles(args.truth, apix=args.apix)
    for ps, what in ((pred, args.poses), (truth, args.truth)):
        if ps.rotations is None:
            raise InputError(f"{what}: no poses (rlnAngleRot/Tilt/Psi or alignments3D/pose); give a file with poses")
    ip, it = match_particles(particle_keys(pred), particle_keys(truth), args.poses, args.truth)
    junk_file, n_junk = None, 0
    kinds = _junk_kinds(args)
    if kinds is not None:
        junk_file, table = kinds
        jt, jk = match_particles(particle_keys(truth), table["rlnImageName"].astype(str).str.strip(),
                                 args.truth, junk_file)
        is_junk = np.zeros(len(truth), bool)
        is_junk[jt] = table.iloc[jk, 1].to_numpy() != "particle"
        keep = ~is_junk[it]
        n_junk = int((~keep).sum())
        ip, it = ip[keep], it[keep]
        if len(ip) == 0:
            raise InputError(f"{junk_file}: every matched particle is junk; no pose to evaluate")
    origins = pred.origins_A is not None and truth.origins_A is not None
    metrics = evaluate_poses(pred.rotations[ip], truth.rotations[it],
                             pred.origins_A[ip] if origins else None, truth.origins_A[it] if origins else None,
                             truth.apix, symmetry=args.symmetry)
    metrics.update(n_predicted=len(pred), n_truth=len(truth), apix=truth.apix,
                   n_junk_excluded=n_junk, junk_truth=None if junk_file is None else str(junk_file))
    if args.map is not None:
        from cryoai.eval.compare import compare_maps, load_map_pair

        ref, mov, map_apix = load_map_pair(args.truth_map, args.map, args.apix)
        res = compare_maps(ref, mov, map_apix, align=True, mask=args.mask,
                           init=(np.asarray(metrics["rotation"]), metrics["hand"]))
        G_map, G_pose = np.asarray(res["rotation"]), np.asarray(metrics["rotation"])
        agree = float(np.rad2deg(np.arccos(np.clip((np.trace(G_map.T @ G_pose) - 1) / 2, -1, 1))))
        metrics.update({k: res[k] for k in ("res_0.5_A", "res_0.143_A", "res_0.5_px", "res_0.143_px")})
        metrics.update(map_hand=res["hand"], map_rotation=res["rotation"], map_shift_px=res["shift_px"],
                       map_align_score=res["align_score"],
                       map_vs_pose_rotation_deg=agree if res["hand"] == metrics["hand"] else None)
    if args.json:
        print(json.dumps(metrics))
        return 0
    _print_report(metrics, args)
    return 0


def _junk_kinds(args: argparse.Namespace):
    """(truth.star path, its rlnImageName and junk kind table), or None when no junk truth applies."""
    from pathlib import Path

    from cryoai.simulate import TRUTH_STAR, read_junk_kinds

    if args.junk_truth is not None:
        if not Path(args.junk_truth).is_file():
            raise InputError(f"--junk-truth {args.junk_truth}: no such file; give the simulation's truth.star")
        table = read_junk_kinds(args.junk_truth)
        if table is None:
            raise InputError(f"--junk-truth {args.junk_truth}: no junk-kind column; give the truth.star of cryoai simulate")
        return Path(args.junk_truth), table
    for star in (args.truth, args.poses):
        candidate = Path(star).with_name(TRUTH_STAR)
        if candidate.is_file():
            table = read_junk_kinds(candidate)
            if table is not None:
                return candidate, table
    return None


def _print_report(m: dict, args: argparse.Namespace) -> None:
    G = np.asarray(m["rotation"])
    angle = np.rad2deg(np.arccos(np.clip((np.trace(G) - 1) / 2, -1, 1)))
    print(f"matched {m['n_particles']} particles ({m['n_predicted']} in {args.poses}, {m['n_truth']} in {args.truth})")
    if m["junk_truth"] is not None:
        print(f"excluded {m['n_junk_excluded']} junk particles (kinds from {m['junk_truth']})")
    print(f"registration: symmetry {m['symmetry']}, hand {m['hand']}, global rotation {angle:.1f}°, "
          f"fitted on {100 * m['inlier_fraction']:.1f}% inliers")
    print(f"rotation error: median {m['rot_median_deg']:.2f}°, mean {m['rot_mean_deg']:.2f}°, "
          f"median ‖R − R*‖² {m['rot_median_sqfrob']:.4f}")
    print(f"within 5° / 10° / 20°: {100 * m['frac_within_5deg']:.1f}% / {100 * m['frac_within_10deg']:.1f}% / "
          f"{100 * m['frac_within_20deg']:.1f}%")
    if m["trans_median_A"] is None:
        print("translation error: not available (origins missing in one file)")
    else:
        print(f"translation error: median {m['trans_median_A']:.2f} Å ({m['trans_median_px']:.2f} px), "
              f"mean {m['trans_mean_A']:.2f} Å, after removing the map's offset of "
              f"{np.linalg.norm(m['map_offset_A']):.2f} Å (its centre is free)")
    if "map_hand" in m:
        fmt = (lambda k: "n/a" if m[f"{k}_A"] is None else f"{m[f'{k}_A']:.2f} Å ({m[f'{k}_px']:.2f} px)")
        print(f"map: hand {m['map_hand']}, correlation {m['map_align_score']:.3f}; "
              f"FSC = 0.5: {fmt('res_0.5')}, FSC = 0.143: {fmt('res_0.143')}")
        if m["map_vs_pose_rotation_deg"] is not None:
            print(f"map and pose registrations differ by {m['map_vs_pose_rotation_deg']:.1f}°")
        else:
            print("warning: the map alignment and the pose registration chose different hands")
