"""The run's last step: does the result deserve trust? Checks that need no ground truth.

From the final poses: half maps of two random halves of the particles (``half_maps``), their
FSC and a resolution at 0.143, labelled for what it is (the halves share one refinement, so it
is optimistic, unless ``train --halves`` refined them independently: gold standard); then the
checks of ``eval/diagnostics.py`` (half-map resolution, their non-spherical agreement, viewing
directions, pose stability, the figure of merit when particles.star has one). Writes
OUT/volume_half{1,2}.mrc (kept as they are under --halves), OUT/fsc_halves.txt/png and
OUT/verdict.json (what ``cryoai report`` shows first), logs each check and, for every one that
warns, a line starting "WARNING:".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cryoai.data.training_data import TrainingData
from cryoai.eval import diagnostics as dg
from cryoai.eval.fsc import fsc, resolution, sphere_mask
from cryoai.eval.fsc_files import write_fsc_files
from cryoai.geometry.symmetry import distance_modulo_group_deg
from cryoai.io.atomic import atomic_path
from cryoai.io.mrc import write_map
from cryoai.io.star import read_star
from cryoai.train import distributed as dist
from cryoai.train.finish import Poses, PoseSettings, final_subset
from cryoai.train.half_maps import half_maps
from cryoai.train.predict import predict_poses_sharded
from cryoai.train.run_dir import RunDir
from cryoai.train.time_limit import (
    STABILITY_ROWS,  # particles whose encoder pose is compared with the refined one
)

SHARED = "halves share one refinement: optimistic, not gold standard"
GOLD = "gold standard: two independent refinements (--halves)"
VERDICT = "verdict.json"
SCORE_COLUMN = "rlnLogLikeliContribution"


def final_check(encoder, volume, data: TrainingData, poses: Poses, how: PoseSettings, run: RunDir,
                seed: int, training_frame: np.ndarray | None = None, rows: np.ndarray | None = None,
                symmetry: str = "C1", axes_score: float | None = None,
                independent_rows: np.ndarray | None = None) -> dict:
    """Half maps from the final ``poses`` (RELION matrices, origins in Å), the checks, and the
    files (module docstring). ``rows``: the particles the map is made from (``--keep``; None:
    all), the only ones checked.

    Pose stability compares, on up to ``STABILITY_ROWS`` kept rows, the encoder's pose
    (unrefined) with the final one, or with ``training_frame`` (the final rotations before a
    ``--symmetry`` finish turned them out of the encoder's frame), modulo the point group
    ``symmetry``, whose equivalent poses the encoder may give. The rows are drawn from
    ``independent_rows`` where any are kept: those whose final pose never started from the
    encoder's (the warm-start subset's; None: any kept row). A row whose final pose is the
    encoder's own says nothing: a 100k-particle run at SNR 0.02 kept the encoder's (random)
    poses for 95 % of its particles and the check passed at 0.02°, while the subset's poses lay
    65° from the encoder's.

    Every torchrun rank calls it (the reconstructions and predictions are shared); rank 0
    writes. ``axes_score``: the warm start's C1 map about the group's axes
    (``diagnostics.symmetry_axes``; None: no such check). Returns the verdict record."""
    rot, origin = poses
    reference = rot if training_frame is None else training_frame
    rows = np.arange(len(rot)) if rows is None else np.asarray(rows)
    halves = half_maps(data, rows, rot[rows], origin[rows], volume.oversample, seed, how.workers)
    pool = rows if independent_rows is None else np.intersect1d(rows, independent_rows)
    pool = rows if len(pool) == 0 else pool
    sample = pool[final_subset(len(pool), STABILITY_ROWS, seed)]
    encoder_rot, _ = predict_poses_sharded(encoder, volume, data, how.radius, how.symmetric, device=how.device,
                                           progress=False, indices=sample, refine=False, workers=how.workers)
    stability = dg.pose_stability(distance_modulo_group_deg(encoder_rot, reference[sample], symmetry))
    if not dist.is_main():
        return {}
    checks = [stability] + ([] if axes_score is None else [dg.symmetry_axes(axes_score, symmetry)])
    return record_verdict(run, halves.maps, data.apix, reference[rows], checks, gold=False)  # views: before any
    # reduction to a symmetry group's asymmetric unit, which would crowd them by design


def gold_standard_check(run: RunDir, half1: np.ndarray, half2: np.ndarray, apix: float, rotations: np.ndarray) -> dict:
    """The checks of a ``--halves`` run on its aligned, independently refined half maps; the pose
    stability of each half comes from that half's own final check (OUT/half{k}/verdict.json)."""
    stability = []
    for k in (1, 2):
        path = run.path / f"half{k}" / VERDICT
        if path.is_file():
            for d in json.loads(path.read_text())["diagnostics"]:
                if d["name"] == "pose stability":
                    stability.append(dg.Diagnostic(**{**d, "name": f"pose stability (half {k})"}))
    return record_verdict(run, (half1, half2), apix, rotations, stability, gold=True)


def record_verdict(run: RunDir, maps: tuple[np.ndarray, np.ndarray], apix: float, rotations: np.ndarray,
                   pose_checks: list[dg.Diagnostic], gold: bool) -> dict:
    """Run the map and view checks, add ``pose_checks`` and the figure of merit's (when
    OUT/particles.star has the column), write the files and log the verdict."""
    half1, half2 = maps
    box = half1.shape[0]
    label = GOLD if gold else SHARED
    curve = fsc(half1, half2, sphere_mask(box))
    res_A, res_px = resolution(curve, 0.143, box, apix)
    checks = [dg.half_map_resolution(res_px, box, shared=not gold), dg.anisotropic_agreement(half1, half2),
              dg.view_coverage(rotations), *pose_checks]
    scores = figure_of_merit(run.path / "particles.star")
    if scores is not None:
        checks.append(dg.score_separation(scores))
    verdict = dg.overall(checks)

    if not gold:  # --halves wrote its aligned, independent half maps already
        write_map(run.path / "volume_half1.mrc", half1, apix)
        write_map(run.path / "volume_half2.mrc", half2, apix)
    write_fsc_files(str(run.path / "fsc_halves"), curve, box, apix, title=f"half-map FSC ({label})")
    record = {"verdict": verdict, "label": label, "gold_standard": gold, "resolution_A": res_A,
              "resolution_px": res_px, "box": box, "apix": apix, "fsc": curve.tolist(),
              "anisotropic_fsc": dg.anisotropic_fsc(half1, half2).tolist(),
              "diagnostics": [c.to_dict() for c in checks],
              "warnings": [f"{c.name}: {c.explanation}" for c in checks if c.verdict == dg.WARN]}
    with atomic_path(run.path / VERDICT) as tmp:
        tmp.write_text(json.dumps(record, indent=1))  # inf (no crossing) as Infinity, which json reads

    run.log(f"half maps ({label}): FSC 0.143 at {res_A:.2f} Å ({res_px:.2f} px); "
            f"{run.path / 'volume_half1.mrc'}, {run.path / 'fsc_halves.txt'}")
    for c in checks:
        run.log(f"check {c.name}: {c.verdict}, {c.value:.3g} {c.unit} (threshold {c.threshold:g})")
    for line in record["warnings"]:
        run.log(f"WARNING: {line}", always_print=True)
    if verdict == dg.WARN:
        run.log(f"WARNING: {len(record['warnings'])} of {len(checks)} checks warn: the map and poses may be "
                "unreliable (see the top of report.html)", always_print=True)
    else:
        run.log(f"final check: no check warns ({', '.join(c.name for c in checks if c.verdict != dg.INFO)})")
    return record


def figure_of_merit(star: Path) -> np.ndarray | None:
    """The per-particle figure of merit of ``star`` (None when it has none)."""
    if not star.is_file():
        return None
    table = read_star(star).get("particles")
    if table is None or SCORE_COLUMN not in table:
        return None
    return table[SCORE_COLUMN].to_numpy(float)

