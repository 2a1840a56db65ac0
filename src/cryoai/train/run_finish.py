"""The end of ``cryoai train``: from the trained models to the files a user takes away.

1. The final poses and map (``finish.final_map_and_poses``, under the time limit's deadline),
   the map made from the particles the fit scores keep (``scores.judge_particles``, ``--keep``);
2. each particle's contrast scale (``contrast``), then, when asked, ``--classes K``
   (``classes``) and the ``--symmetry`` finish (``symmetric_finish``);
3. ``volume.mrc``, ``particles.star`` (+ ``particles.cs``) with the poses and every per-particle
   column, the final checkpoint (``cryoai predict`` uses its map);
4. the checks that need no ground truth (``final_check``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from cryoai.data.particle_export import write_particle_files
from cryoai.geometry.symmetry import group_order
from cryoai.io.mrc import write_map
from cryoai.models.volume_map import volume_to_map
from cryoai.train import distributed as dist
from cryoai.train.classes import classify
from cryoai.train.contrast import contrast_scales
from cryoai.train.final_check import final_check
from cryoai.train.finish import Poses, final_map_and_poses
from cryoai.train.scores import judge_particles, parse_keep

if TYPE_CHECKING:
    from cryoai.train.trainer import Trainer

# the per-particle columns the finish adds to particles.star (rlnClassNumber with --classes only)
PARTICLE_COLUMNS = ("rlnLogLikeliContribution", "rlnSelected", "rlnCtfScalefactor", "rlnClassNumber")


def finish_run(trainer: Trainer) -> dict:
    """Steps 1–4 of the module docstring; returns every particle's rotations and origins (Å)."""
    cfg, run, data, main = trainer.cfg, trainer.run, trainer.data, dist.is_main()

    def write_round(k: int) -> None:  # the maps along the way, as during training (time to resolution)
        if main:
            trainer.write_volume(run.path / "volumes" / f"final_round_{k}.mrc")

    columns: dict = {}  # per-particle columns of particles.star (PARTICLE_COLUMNS)

    def kept_rows(poses: Poses) -> np.ndarray:  # scored against the map every pose was refined against
        columns.update(judge_particles(trainer.volume, data, poses, parse_keep(cfg.keep), trainer.device,
                                       cfg.workers, run.log))
        return np.flatnonzero(columns["rlnSelected"])

    left, prior = trainer.seconds_left(), trainer.subset_prior()
    rot, origin = final_map_and_poses(trainer.encoder, trainer.volume, data, trainer.pose_settings(),
                                      cfg.final_subset, cfg.final_iterations, cfg.seed, write_round, run.log,
                                      None if left is None else time.time() + left, map_rows=kept_rows,
                                      prior=prior)
    kept = np.flatnonzero(columns["rlnSelected"])
    scales = contrast_scales(trainer.volume, data, np.arange(len(rot)), torch.from_numpy(rot).float(),
                             torch.from_numpy(origin / data.apix).float(), device=trainer.device)
    columns["rlnCtfScalefactor"] = scales
    run.log("contrast scales (rlnCtfScalefactor): 10/50/90 % at "
            + "/".join(f"{q:.2f}" for q in np.percentile(scales, [10, 50, 90])))
    consensus = rot, origin  # the poses of volume.mrc, in the encoder's frame
    if cfg.classes > 1:  # each class map has its frame: the STAR gets each particle's pose in its class's map
        rot, origin = write_classes(trainer, consensus, kept, columns)
    turned, training_frame = None, None
    if group_order(cfg.symmetry) > 1:  # poses and map written in RELION's orientation
        from cryoai.train.symmetric_finish import symmetric_finish

        training_frame = consensus[0]
        consensus, turned, R = symmetric_finish(trainer.encoder, trainer.volume, data, consensus,
                                                trainer.pose_settings(), cfg.symmetry, log=run.log, rows=kept,
                                                search=None if cfg.warm_start else True)  # no warm start: any frame
        rot, origin = consensus  # with --classes too: the STAR's poses are then those of the symmetric map
        run.log(f"symmetry {cfg.symmetry}: map and poses turned by R = {np.round(R, 5).tolist()} (poses A·Rᵀ)")
    if main:
        if turned is None:
            trainer.write_volume(run.path / "volume.mrc")
        else:
            write_map(run.path / "volume.mrc", turned, data.apix)
        write_particle_files(run.path / "particles.star", trainer.particles, rot, origin,
                             extra_columns=columns)  # + particles.cs for .cs input
        trainer.save_checkpoint()  # `cryoai predict` uses the final map
    run.log(f"wrote {run.path / 'volume.mrc'} ({cfg.train_box} px, {data.apix:.3f} Å/px) "
            f"and poses for {len(rot)} particles in {run.path / 'particles.star'}")
    final_check(trainer.encoder, trainer.volume, data, consensus, trainer.pose_settings(), run, cfg.seed,
                training_frame, rows=kept, symmetry=cfg.symmetry, axes_score=trainer.axes_score,
                independent_rows=None if prior is None else prior[0])
    return {"rotations": rot, "origins_A": origin}


def write_classes(trainer: Trainer, poses: Poses, rows: np.ndarray, columns: dict) -> Poses:
    """``--classes K`` of the particles ``rows`` (``train/classes.py``): writes
    OUT/volume_class{k}.mrc, adds rlnClassNumber to ``columns`` (0: not kept, not classified)
    and returns every particle's pose in its class's map."""
    cfg = trainer.cfg
    result = classify(trainer.volume, trainer.data, rows, poses, cfg.classes, trainer.pose_settings(),
                      seed=cfg.seed, log=trainer.run.log)
    columns["rlnClassNumber"] = result.labels
    for k, volume in enumerate(result.volumes, 1):
        if dist.is_main():
            write_map(trainer.run.path / f"volume_class{k}.mrc", volume_to_map(volume, cfg.train_box).numpy(),
                      trainer.data.apix)
    return result.poses
