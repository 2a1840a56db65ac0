"""Gold-standard half sets: two independent reconstructions on a random split of the particles.

Each half trains in OUT/half1 and OUT/half2 (its own warm start, encoder and volume). Half 2's
map is aligned onto half 1's (rotation, shift, hand: ab initio halves live in arbitrary frames)
and its poses are moved into half 1's frame, so OUT/particles.star holds consistent poses with
rlnRandomSubset, OUT/volume_half{1,2}.mrc can go straight to RELION's post-processing, and
OUT/fsc.txt / fsc.png give the half-map FSC (resolution at 0.143). OUT/particles.star also
carries the per-particle columns each half's finish wrote for its particles (fit score,
rlnSelected, contrast scale; with --classes, rlnClassNumber numbers that half's own classes,
OUT/half{h}/volume_class{k}.mrc).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from cryoai.data.particle_export import write_particle_files
from cryoai.data.particles import ParticleSet, load_particles
from cryoai.eval.align import align_maps
from cryoai.eval.fsc import fsc, resolution, sphere_mask
from cryoai.eval.fsc_files import write_fsc_files
from cryoai.eval.poses import apply_registration
from cryoai.io.mrc import read_map, write_map
from cryoai.train.config import TrainConfig
from cryoai.train.distributed import is_main
from cryoai.train.final_check import gold_standard_check
from cryoai.train.half_maps import split_halves
from cryoai.train.run_dir import RunDir
from cryoai.train.run_finish import PARTICLE_COLUMNS
from cryoai.train.trainer import Trainer


def move_poses(rotations: np.ndarray, origins_A: np.ndarray, alignment, apix: float) -> tuple[np.ndarray, np.ndarray]:
    """Poses of particles of a map ``mov`` expressed for ``aligned(p) = mov_h(Gᵀ(p − t))``.

    Rotations: A' = A_h·Gᵀ. The map's centre moves to t, so its projection at A' puts the
    particle at (A'·t)_xy instead of the image centre; the particle images themselves stay, so
    the origin (particle at image centre − origin) becomes origin + (A'·t)_xy.
    """
    rot = apply_registration(rotations, alignment.rotation, alignment.hand)
    moved = np.einsum("nij,j->ni", rot, np.asarray(alignment.shift, dtype=np.float64))[:, :2]
    return rot, origins_A + moved * apix


def finished_half(folder: Path, n: int) -> bool:
    """The half run in ``folder`` wrote its final map and the poses of its ``n`` particles
    (``Trainer.finish`` writes both, each atomically, before its last checkpoint)."""
    if not (folder / "volume.mrc").is_file() or not (folder / "particles.star").is_file():
        return False
    done = load_particles(folder / "particles.star")
    return len(done) == n and done.rotations is not None and done.origins_A is not None


def half_columns(folder: Path) -> dict[str, np.ndarray]:
    """The per-particle columns (``run_finish.PARTICLE_COLUMNS``) in the half run's particles.star."""
    table = load_particles(folder / "particles.star").table
    return {name: table[name].to_numpy() for name in PARTICLE_COLUMNS if name in table}


def _train_half(particles: ParticleSet, cfg: TrainConfig, half: int, run: RunDir, device: str, resume: bool,
                progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Train one half in ``run``: from its checkpoint when resuming and it has one, else from
    the start (a run stopped in half 2 before its first checkpoint). Returns its poses."""
    resume = resume and (run.path / "checkpoints" / "last.pt").is_file()
    if not resume:  # config.yaml is written once, when the half starts
        run.write_config(cfg.to_dict(), {"half": half, "n_particles": len(particles)})
    try:
        result = Trainer(particles, cfg, run, device=device, resume=resume, progress=progress).fit()
    finally:
        run.close()
    return result["rotations"], result["origins_A"]


def train_halves(particles: ParticleSet, cfg: TrainConfig, run: RunDir, device: str, resume: bool,
                 progress: bool) -> dict:
    labels = split_halves(len(particles), cfg.seed)
    t0 = time.time()  # under --max-minutes each half gets its share of what is left
    rotations = np.zeros((len(particles), 3, 3))
    origins = np.zeros((len(particles), 2))
    maps, apix = [], None
    columns: dict[str, np.ndarray] = {}  # each half's per-particle columns, at its rows
    for half in (1, 2):
        rows = np.flatnonzero(labels == half)
        folder = run.path / f"half{half}"
        if resume and finished_half(folder, len(rows)):
            run.log(f"half {half}: finished before, its map and poses read from {folder}")
            done = load_particles(folder / "particles.star")
            rotations[rows], origins[rows] = done.rotations, done.origins_A
        else:
            run.log(f"half {half}: {len(rows)} particles → {folder}")
            limit = None if not cfg.max_minutes else (cfg.max_minutes - (time.time() - t0) / 60) / (3 - half)
            half_cfg = replace(cfg, seed=cfg.seed + half, max_minutes=limit)
            rotations[rows], origins[rows] = _train_half(particles.subset(rows), half_cfg,
                                                         half, RunDir(folder, quiet=run.quiet), device, resume, progress)
        if is_main():  # under torchrun rank 0 alone wrote the map and does what follows
            vol, apix = read_map(folder / "volume.mrc")
            maps.append(vol)
            for name, values in half_columns(folder).items():
                columns.setdefault(name, np.zeros(len(particles), dtype=values.dtype))[rows] = values
    if not is_main():
        return {}

    alignment = align_maps(maps[0], maps[1], apix)
    rows2 = np.flatnonzero(labels == 2)
    rotations[rows2], origins[rows2] = move_poses(rotations[rows2], origins[rows2], alignment, apix)
    half1, half2 = maps[0], alignment.aligned
    write_map(run.path / "volume_half1.mrc", half1, apix)
    write_map(run.path / "volume_half2.mrc", half2, apix)
    write_map(run.path / "volume.mrc", (half1 + half2) / 2, apix)
    box = half1.shape[0]
    curve = fsc(half1, half2, mask=sphere_mask(box))
    res_A, res_px = resolution(curve, 0.143, box, apix)

    write_fsc_files(str(run.path / "fsc"), curve, box, apix, title="half-map FSC (after alignment)")
    write_particle_files(run.path / "particles.star", particles, rotations, origins,
                         extra_columns={**columns, "rlnRandomSubset": labels})
    run.log(f"half maps aligned (hand {alignment.hand}, correlation {alignment.score:.3f}); "
            f"FSC 0.143: {res_A:.2f} Å ({res_px:.2f} px)")
    gold_standard_check(run, half1, half2, apix, rotations)
    return {"res_0.143_A": res_A, "res_0.143_px": res_px, "hand": alignment.hand}
