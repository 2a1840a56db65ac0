"""Write particles with new poses: RELION 3.1 STAR, cryoSPARC .cs, cryoDRGN pose.pkl (atomically).

Poses are RELION matrices A (N, 3, 3) and origins in Å (N, 2) with the sign of
``rlnOriginX/YAngst``. Written columns/fields overwrite any old pose values.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cryoai.geometry.rotations import matrix_to_cryosparc_pose, matrix_to_euler
from cryoai.io.atomic import atomic_path
from cryoai.io.columns import (CS_CTF, CS_CTF_RADIANS, CS_POSE, CS_POSE_PSIZE, CS_SHIFT, STAR_ANGLES, STAR_CTF,
                               STAR_OPTICS_CTF, STAR_ORIGINS_A, STAR_ORIGINS_PX)
from cryoai.io.cryosparc import table_to_records, write_cs
from cryoai.io.star import write_star

if TYPE_CHECKING:
    from cryoai.data.particle_set import ParticleSet

# RELION 3.0 per-particle optics columns; they move into data_optics on export (the pixel size
# as rlnImagePixelSize; voltage, Cs and amplitude contrast when the set has a CTF).
PIXEL_COLUMNS_30 = ("rlnMagnification", "rlnDetectorPixelSize", "rlnPixelSize", "rlnImagePixelSize")
OPTICS_COLUMNS_30 = tuple(STAR_CTF[name] for name in STAR_OPTICS_CTF) + PIXEL_COLUMNS_30


def write_particles_star(path: str | os.PathLike, particles: ParticleSet, rotations: np.ndarray,
                         origins_A: np.ndarray, extra_columns: dict[str, np.ndarray] | None = None) -> None:
    """RELION 3.1 STAR (``data_optics`` + ``data_particles``) with the given poses.

    STAR input: every particle column passes through (3.0's per-particle optics columns move
    into a built ``data_optics``). .cs / bare-stack input: ``rlnImageName`` = ``index@absolute
    stack path`` plus the CTF columns. ``rlnOriginX/Y`` (px) are dropped in favour of
    ``rlnOriginX/YAngst``; ``extra_columns`` (e.g. rlnRandomSubset) are added last.
    """
    n = len(particles)
    rotations, origins_A = _check_poses(n, rotations, origins_A)
    if particles.path.suffix.lower() == ".star":
        table = particles.table.copy()
    else:
        table = pd.DataFrame({"rlnImageName": _absolute_image_names(particles)})
        if particles.ctf is not None:
            for name, column in STAR_CTF.items():
                table[column] = getattr(particles.ctf, name)
    if particles.optics is not None:
        optics = _updated_optics(particles)
        if "rlnOpticsGroup" not in table:
            table["rlnOpticsGroup"] = int(optics["rlnOpticsGroup"].iloc[0])
    else:
        optics, groups = _built_optics(particles)
        moved = [c for c in OPTICS_COLUMNS_30 if c in table and (c in optics or c in PIXEL_COLUMNS_30)]
        table = table.drop(columns=moved)
        table["rlnOpticsGroup"] = groups
    rot, tilt, psi = matrix_to_euler(rotations)
    table = table.drop(columns=[c for c in STAR_ORIGINS_PX if c in table])
    for name, values in zip(STAR_ANGLES + STAR_ORIGINS_A, (rot, tilt, psi, origins_A[:, 0], origins_A[:, 1])):
        table[name] = values
    for name, values in (extra_columns or {}).items():
        values = np.asarray(values)
        if values.shape != (n,):
            raise ValueError(f"extra column {name} has shape {values.shape}, expected ({n},)")
        table[name] = values
    write_star(path, {"optics": optics, "particles": table})


def write_particles_cs(path: str | os.PathLike, particles: ParticleSet, rotations: np.ndarray,
                       origins_A: np.ndarray) -> None:
    """cryoSPARC .cs with ``alignments3D/pose`` (axis-angle) and ``alignments3D/shift`` (px).

    .cs input: every field passes through. Otherwise: uid, blob/* (absolute stack paths,
    0-based index) and the ctf/* fields are built from the set.
    """
    n = len(particles)
    rotations, origins_A = _check_poses(n, rotations, origins_A)
    if particles.path.suffix.lower() == ".cs":
        table = particles.table.copy()
    else:
        table = _cs_table(particles)
    pose = matrix_to_cryosparc_pose(rotations).astype(np.float32)
    shift = (origins_A / particles.apix).astype(np.float32)
    for i in range(3):
        table[f"{CS_POSE}[{i}]"] = pose[:, i]
    for i in range(2):
        table[f"{CS_SHIFT}[{i}]"] = shift[:, i]
    table[CS_POSE_PSIZE] = np.float32(particles.apix)
    write_cs(path, table_to_records(table))


def write_particle_files(star_path: str | os.PathLike, particles: ParticleSet, rotations: np.ndarray,
                         origins_A: np.ndarray, extra_columns: dict | None = None) -> list[Path]:
    """The outputs of ``train`` and ``predict``: the RELION 3.1 STAR at ``star_path`` (with
    ``extra_columns``, e.g. rlnRandomSubset, as ``write_particles_star``) and, when the
    input is a cryoSPARC ``.cs``, a ``.cs`` beside it (same stem) with every input field and the new
    ``alignments3D/pose``, ``shift`` and ``psize_A``. Returns the paths written.

    The .cs is a NumPy ``.npy`` record array, the format cryosparc-tools' ``Dataset.save`` writes by
    default (``NUMPY_FORMAT``); cryoSPARC and ``Dataset.load`` read it."""
    star_path = Path(star_path)
    write_particles_star(star_path, particles, rotations, origins_A, extra_columns=extra_columns)
    written = [star_path]
    if particles.path.suffix.lower() == ".cs":
        written.append(star_path.with_suffix(".cs"))
        write_particles_cs(written[-1], particles, rotations, origins_A)
    return written


def write_pose_pkl(path: str | os.PathLike, rotations: np.ndarray, origins_A: np.ndarray, box: int,
                   apix: float) -> None:
    """cryoDRGN ``pose.pkl``: ``(R (N, 3, 3), t (N, 2))``, R = A, t = origin in px / box."""
    rotations, origins_A = _check_poses(len(rotations), rotations, origins_A)
    if box <= 0:
        raise ValueError("write_pose_pkl needs the box size in pixels")
    t = origins_A / float(apix) / int(box)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump((rotations.astype(np.float64), t.astype(np.float64)), f)


# ---- helpers ---------------------------------------------------------------------------------
def _check_poses(n: int, rotations, origins_A) -> tuple[np.ndarray, np.ndarray]:
    rotations = np.asarray(rotations, dtype=np.float64)
    origins_A = np.asarray(origins_A, dtype=np.float64)
    if rotations.shape != (n, 3, 3) or origins_A.shape != (n, 2):
        raise ValueError(f"poses must be (N, 3, 3) and (N, 2) for N={n}, got {rotations.shape}, {origins_A.shape}")
    return rotations, origins_A


def _absolute_image_names(particles: ParticleSet) -> list[str]:
    stack = particles.stack
    files = [str(Path(os.path.abspath(f))) for f in stack.files]
    return [f"{i + 1:06d}@{files[f]}" for f, i in zip(stack.file_ids, stack.indices)]


def _updated_optics(particles: ParticleSet) -> pd.DataFrame:
    """The input's optics block, with pixel size (if overridden) and image size filled in."""
    optics = particles.optics.copy()
    sizes = pd.to_numeric(optics.get("rlnImagePixelSize", pd.Series(dtype=float)), errors="coerce")
    if sizes.empty or not np.isclose(sizes.to_numpy(np.float64), particles.apix, rtol=0.011).any():
        optics["rlnImagePixelSize"] = particles.apix  # missing, or --apix overrode it
    if "rlnImageSize" not in optics and particles.box > 0:
        optics["rlnImageSize"] = int(particles.box)
    if "rlnImageDimensionality" not in optics:
        optics["rlnImageDimensionality"] = 2
    if "rlnOpticsGroup" not in optics:
        optics.insert(0, "rlnOpticsGroup", np.arange(1, len(optics) + 1))
    if "rlnOpticsGroupName" not in optics:
        optics.insert(1, "rlnOpticsGroupName", [f"opticsGroup{g}" for g in optics["rlnOpticsGroup"]])
    return optics


def _built_optics(particles: ParticleSet) -> tuple[pd.DataFrame, np.ndarray]:
    """Optics groups for 3.0 / .cs / bare input: one per (voltage, Cs, amplitude contrast)."""
    n = len(particles)
    if particles.ctf is None:
        keys, groups = np.zeros((1, 0)), np.zeros(n, dtype=np.int64)
    else:
        per_particle = np.stack([getattr(particles.ctf, name) for name in STAR_OPTICS_CTF], 1)
        keys, groups = np.unique(per_particle, axis=0, return_inverse=True)
    optics = pd.DataFrame({
        "rlnOpticsGroup": np.arange(1, len(keys) + 1),
        "rlnOpticsGroupName": [f"opticsGroup{g + 1}" for g in range(len(keys))],
        "rlnImagePixelSize": particles.apix,
        "rlnImageSize": int(particles.box),
        "rlnImageDimensionality": 2,
    })
    if particles.ctf is not None:
        for name, values in zip(STAR_OPTICS_CTF, keys.T):
            optics[STAR_CTF[name]] = values
    return optics, np.asarray(groups).reshape(n) + 1


def _cs_table(particles: ParticleSet) -> pd.DataFrame:
    """cryoSPARC fields (as a table, see ``cryoai.io.cryosparc``) for a STAR / bare-stack set."""
    n, stack = len(particles), particles.stack
    files = np.array([os.path.abspath(f) for f in stack.files], dtype=object)
    table = pd.DataFrame({
        "uid": np.arange(n, dtype=np.uint64),
        "blob/path": files[stack.file_ids],
        "blob/idx": stack.indices.astype(np.uint32),
        "blob/shape[0]": np.full(n, particles.box, dtype=np.uint32),
        "blob/shape[1]": np.full(n, particles.box, dtype=np.uint32),
        "blob/psize_A": np.full(n, particles.apix, dtype=np.float32),
    })
    if particles.ctf is not None:
        for name, field in CS_CTF.items():
            values = getattr(particles.ctf, name)
            table[field] = (np.deg2rad(values) if name in CS_CTF_RADIANS else values).astype(np.float32)
    return table
