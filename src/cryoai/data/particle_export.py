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
from cryoai.io.cryosparc import table_to_records, write_cs
from cryoai.io.star import write_star

if TYPE_CHECKING:
    from cryoai.data.particle_set import ParticleSet

# RELION 3.0 per-particle optics columns; they move into data_optics on export (the pixel size
# as rlnImagePixelSize; voltage, Cs and amplitude contrast when the set has a CTF).
PIXEL_COLUMNS_30 = ("rlnMagnification", "rlnDetectorPixelSize", "rlnPixelSize", "rlnImagePixelSize")
OPTICS_COLUMNS_30 = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast") + PIXEL_COLUMNS_30
CTF_STAR = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnVoltage", "rlnSphericalAberration",
            "rlnAmplitudeContrast", "rlnPhaseShift", "rlnCtfBfactor")


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
            for j, column in enumerate(CTF_STAR):
                table[column] = particles.ctf[:, j]
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
    table = table.drop(columns=[c for c in ("rlnOriginX", "rlnOriginY") if c in table])
    for name, values in (("rlnAngleRot", rot), ("rlnAngleTilt", tilt), ("rlnAnglePsi", psi),
                         ("rlnOriginXAngst", origins_A[:, 0]), ("rlnOriginYAngst", origins_A[:, 1])):
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
        table[f"alignments3D/pose[{i}]"] = pose[:, i]
    for i in range(2):
        table[f"alignments3D/shift[{i}]"] = shift[:, i]
    table["alignments3D/psize_A"] = np.float32(particles.apix)
    write_cs(path, table_to_records(table))


def write_particle_files(star_path: str | os.PathLike, particles: ParticleSet, rotations: np.ndarray,
                         origins_A: np.ndarray) -> list[Path]:
    """The outputs of ``train`` and ``predict``: the RELION 3.1 STAR at ``star_path`` and, when the
    input is a cryoSPARC ``.cs``, a ``.cs`` beside it (same stem) with every input field and the new
    ``alignments3D/pose``, ``shift`` and ``psize_A``. Returns the paths written.

    The .cs is a NumPy ``.npy`` record array, the format cryosparc-tools' ``Dataset.save`` writes by
    default (``NUMPY_FORMAT``); cryoSPARC and ``Dataset.load`` read it."""
    star_path = Path(star_path)
    write_particles_star(star_path, particles, rotations, origins_A)
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
        keys, groups = np.unique(particles.ctf[:, 3:6], axis=0, return_inverse=True)
    optics = pd.DataFrame({
        "rlnOpticsGroup": np.arange(1, len(keys) + 1),
        "rlnOpticsGroupName": [f"opticsGroup{g + 1}" for g in range(len(keys))],
        "rlnImagePixelSize": particles.apix,
        "rlnImageSize": int(particles.box),
        "rlnImageDimensionality": 2,
    })
    if particles.ctf is not None:
        optics["rlnVoltage"], optics["rlnSphericalAberration"], optics["rlnAmplitudeContrast"] = keys.T
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
        c = particles.ctf
        for name, values in (("ctf/accel_kv", c[:, 3]), ("ctf/cs_mm", c[:, 4]), ("ctf/amp_contrast", c[:, 5]),
                             ("ctf/df1_A", c[:, 0]), ("ctf/df2_A", c[:, 1]),
                             ("ctf/df_angle_rad", np.deg2rad(c[:, 2])), ("ctf/phase_shift_rad", np.deg2rad(c[:, 6])),
                             ("ctf/bfactor", c[:, 7])):
            table[name] = values.astype(np.float32)
    return table
