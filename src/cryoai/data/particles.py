"""Load particle sets from RELION STAR (3.0, 3.1+, 5), cryoSPARC .cs or bare MRC stacks.

Rules (see ``shared/CONVENTIONS.md``):
- pixel size: the ``apix`` argument, else optics ``rlnImagePixelSize``, else RELION 3.0's
  ``rlnDetectorPixelSize``·1e4/``rlnMagnification`` (magnification 10000 when absent), else
  ``rlnPixelSize``, else ``blob/psize_A``; otherwise InputError asking for ``--apix``. Pixel
  sizes that differ by under 1 % use the most common (noted); a stack header whose voxel size
  differs from the metadata's is noted, naming both (the metadata's is used).
- CTF values: the particle's column, else its optics group's, else the ``ctf`` dict, else a
  default for the optional ones: defocus V = U, angle 0, phase shift 0, B-factor 0, amplitude
  contrast 0.1 (as cryoDRGN; recorded in ``ParticleSet.notes`` and logged). No defocus at all
  means no CTF (``ctf`` None). Voltage and Cs have no default.
- image names ``index@path`` (1-based) resolve against the metadata file's folder, then
  ``datadir``, then the working directory, then the metadata folder's parent and grandparent
  (RELION project layout), then by file name alone in the metadata folder and ``datadir`` (a
  guess: noted and logged, naming the file used).
  A stack that is absent only fails when its images are read (or in ``check-inputs``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from cryoai.data.particle_export import write_particles_cs, write_particles_star, write_pose_pkl
from cryoai.data.particle_set import ParticleSet
from cryoai.errors import InputError
from cryoai.geometry.rotations import cryosparc_pose_to_matrix, euler_to_matrix
from cryoai.io.columns import (CS_CTF, CS_CTF_RADIANS, CS_POSE, CS_SHIFT, STAR_ANGLES, STAR_CTF,
                               STAR_ORIGINS_A, STAR_ORIGINS_PX)
from cryoai.io.cryosparc import read_cs, records_to_table
from cryoai.io.stack import ImageStack
from cryoai.io.star import read_star
from cryoai.physics.ctf import CTF_COLUMNS, CTFParams

__all__ = ["CTF_COLUMNS", "ParticleSet", "load_particles", "write_particles_star",
           "write_particles_cs", "write_pose_pkl"]

log = logging.getLogger(__name__)

DEFAULT_AMP_CONTRAST = 0.1
OPTIONAL_CTF_DEFAULTS = {"defocus_angle_deg": 0.0, "phase_shift_deg": 0.0, "bfactor_A2": 0.0}


def load_particles(path: str | os.PathLike, *, apix: float | None = None, datadir: str | None = None,
                   ctf: dict | None = None) -> ParticleSet:
    """Read particle metadata from ``path`` (.star, .cs, .mrcs/.mrc); images stay on disk."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such particle file; check the path")
    if apix is not None and not (np.isfinite(apix) and apix > 0):
        raise InputError(f"{path}: pixel size --apix {apix} must be a positive number of Å/px")
    unknown = set(ctf or {}) - set(CTF_COLUMNS)
    if unknown:
        raise InputError(f"{path}: unknown CTF parameter(s) {sorted(unknown)}; use {list(CTF_COLUMNS)}")
    suffix = path.suffix.lower()
    if suffix == ".star":
        return _load_star(path, apix, datadir, ctf or {})
    if suffix == ".cs":
        return _load_cs(path, apix, datadir, ctf or {})
    if suffix in (".mrcs", ".mrc", ".st"):
        return _load_bare_stack(path, apix, ctf)
    raise InputError(f"{path}: unknown particle file type {suffix!r}; give a .star, .cs or .mrcs file")


# ---- RELION STAR ---------------------------------------------------------------------------
def _load_star(path: Path, apix: float | None, datadir: str | None, ctf: dict) -> ParticleSet:
    blocks = read_star(path)
    optics = blocks.get("optics") if isinstance(blocks.get("optics"), pd.DataFrame) else None
    table = _particle_block(blocks, path)
    meta = _join_optics(table, optics, path)
    notes: list[str] = []

    pixel = apix if apix is not None else _single_apix(_star_apix(meta, path), path, notes)
    ctf_params = _ctf_params({k: meta[c] for k, c in STAR_CTF.items() if c in meta}, STAR_CTF, ctf, len(meta),
                             path, notes)
    rotations = None
    if set(STAR_ANGLES) <= set(meta.columns):
        rotations = euler_to_matrix(*(_num(meta, c, path) for c in STAR_ANGLES))
    origins = None
    if set(STAR_ORIGINS_A) <= set(meta.columns):
        origins = np.stack([_num(meta, c, path) for c in STAR_ORIGINS_A], 1)
    elif set(STAR_ORIGINS_PX) <= set(meta.columns):
        origins = np.stack([_num(meta, c, path) for c in STAR_ORIGINS_PX], 1) * pixel

    files, file_ids, indices = _parse_image_names(table["rlnImageName"], path)
    box = None
    if "rlnImageSize" in meta:
        sizes = np.unique(_num(meta, "rlnImageSize", path))
        if len(sizes) > 1:
            raise InputError(f"{path}: optics groups have different box sizes {sizes.astype(int).tolist()} px; "
                             f"re-extract all particles with one box size")
        box = int(sizes[0])
    resolve = _Resolver(path, datadir)
    stack = ImageStack([resolve(f) for f in files], file_ids, indices, box, source=path)
    resolve.note(notes)
    if apix is None:
        _compare_header_apix(stack, pixel, notes)
    return _finish(path, table, optics, stack, pixel, ctf_params, rotations, origins, notes)


def _particle_block(blocks: dict, path: Path) -> pd.DataFrame:
    """The particle table: ``data_particles``, else the first other loop (3.0: ``data_`` etc.)."""
    tables = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame) and k != "optics"}
    if "particles" in tables:
        table = tables["particles"]
    else:
        with_names = [t for t in tables.values() if "rlnImageName" in t.columns]
        table = with_names[0] if with_names else next(iter(tables.values()), pd.DataFrame())
    if "rlnImageName" not in table.columns:
        raise InputError(f"{path}: no rlnImageName column, so no particle images; give a particle STAR "
                         f"file (from Extract, Select or Refine3D), not a micrograph or model STAR")
    if len(table) == 0:
        raise InputError(f"{path}: the particle table is empty; give a STAR file with particles")
    return table.reset_index(drop=True)


def _join_optics(table: pd.DataFrame, optics: pd.DataFrame | None, path: Path) -> pd.DataFrame:
    """Particle columns plus the optics columns they lack, joined on rlnOpticsGroup."""
    if optics is None or len(optics) == 0:
        return table
    extra = [c for c in optics.columns if c not in table.columns]
    if "rlnOpticsGroup" not in table.columns:
        if len(optics) != 1:
            raise InputError(f"{path}: {len(optics)} optics groups but particles have no rlnOpticsGroup; "
                             f"add the rlnOpticsGroup column")
        return pd.concat([table, pd.DataFrame({c: [optics[c].iloc[0]] * len(table) for c in extra})], axis=1)
    if "rlnOpticsGroup" not in optics.columns:
        raise InputError(f"{path}: data_optics has no rlnOpticsGroup column; add it (1, 2, ...)")
    missing = set(table["rlnOpticsGroup"]) - set(optics["rlnOpticsGroup"])
    if missing:
        raise InputError(f"{path}: particles refer to optics group(s) {sorted(missing)} absent from "
                         f"data_optics; add them or fix rlnOpticsGroup")
    if optics["rlnOpticsGroup"].duplicated().any():
        raise InputError(f"{path}: data_optics lists an rlnOpticsGroup twice; make the group numbers unique")
    joined = table[["rlnOpticsGroup"]].merge(optics, on="rlnOpticsGroup", how="left")
    joined.index = table.index
    return pd.concat([table, joined[extra]], axis=1)


def _star_apix(meta: pd.DataFrame, path: Path) -> np.ndarray:
    if "rlnImagePixelSize" in meta:
        return _num(meta, "rlnImagePixelSize", path)
    if "rlnDetectorPixelSize" in meta:  # µm; RELION's default magnification is 10000
        mag = _num(meta, "rlnMagnification", path) if "rlnMagnification" in meta else 1e4
        return _num(meta, "rlnDetectorPixelSize", path) * 1e4 / mag
    if "rlnPixelSize" in meta:
        return _num(meta, "rlnPixelSize", path)
    raise InputError(f"{path}: no pixel size (no rlnImagePixelSize, rlnDetectorPixelSize or rlnPixelSize); "
                     f"pass --apix with the pixel size in Å")


# ---- cryoSPARC .cs ---------------------------------------------------------------------------
def _load_cs(path: Path, apix: float | None, datadir: str | None, ctf: dict) -> ParticleSet:
    records = read_cs(path)
    fields = set(records.dtype.names)
    if not {"blob/path", "blob/idx"} <= fields:
        raise InputError(f"{path}: no blob/path and blob/idx fields, so no particle images; export the "
                         f"particles (with their blob) from cryoSPARC")
    table = records_to_table(records)
    notes: list[str] = []
    apix_given = apix is not None
    if apix is None:
        if "blob/psize_A" not in fields:
            raise InputError(f"{path}: no blob/psize_A field; pass --apix with the pixel size in Å")
        apix = _single_apix(records["blob/psize_A"].astype(np.float64), path, notes)
    columns = {k: records[f].astype(np.float64) for k, f in CS_CTF.items() if f in fields}
    for key in CS_CTF_RADIANS:
        if key in columns:
            columns[key] = np.rad2deg(columns[key])
    ctf_params = _ctf_params(columns, CS_CTF, ctf, len(records), path, notes)
    rotations = origins = None
    if CS_POSE in fields:
        rotations = cryosparc_pose_to_matrix(records[CS_POSE])
    if CS_SHIFT in fields:
        origins = records[CS_SHIFT].astype(np.float64) * apix
    names = table["blob/path"].str.lstrip(">")  # cryoSPARC marks project-relative paths with ">"
    codes, files = pd.factorize(names)
    box = None
    if "blob/shape" in fields:
        shapes = np.unique(records["blob/shape"].reshape(len(records), -1), axis=0)
        if len(shapes) > 1 or shapes[0][0] != shapes[0][-1]:
            raise InputError(f"{path}: particles have box shapes {shapes.tolist()}; re-extract all with one "
                             f"square box size")
        box = int(shapes[0][0])
    resolve = _Resolver(path, datadir)
    stack = ImageStack([resolve(f) for f in files], codes, records["blob/idx"].astype(np.int64), box, source=path)
    resolve.note(notes)
    if not apix_given:
        _compare_header_apix(stack, apix, notes)
    return _finish(path, table, None, stack, apix, ctf_params, rotations, origins, notes)


# ---- bare stack ------------------------------------------------------------------------------
def _load_bare_stack(path: Path, apix: float | None, ctf: dict | None) -> ParticleSet:
    if apix is None:
        raise InputError(f"{path}: a bare stack carries no reliable pixel size; pass --apix in Å")
    n = ImageStack([path], np.zeros(1, np.int64), np.zeros(1, np.int64), source=path)._data(0).shape[0]
    stack = ImageStack([path], np.zeros(n, np.int64), np.arange(n), source=path)
    table = pd.DataFrame({"rlnImageName": [f"{i + 1:06d}@{path.name}" for i in range(n)]})
    notes: list[str] = []
    ctf_params = None if ctf is None else _ctf_params({}, {}, ctf, n, path, notes)
    return _finish(path, table, None, stack, apix, ctf_params, None, None, notes)


# ---- shared helpers --------------------------------------------------------------------------
def _finish(path, table, optics, stack, apix, ctf, rotations, origins, notes) -> ParticleSet:
    box = stack.box if stack.box is not None else stack.header_box()
    for note in notes:
        log.warning("%s: %s", path, note)
    return ParticleSet(path=path, table=table, optics=optics, box=int(box), apix=float(apix), ctf=ctf,
                       rotations=rotations, origins_A=origins, stack=stack, notes=notes)


def _ctf_params(columns: dict, names: dict, given: dict, n: int, path: Path, notes: list[str]) -> CTFParams | None:
    """CTF of n particles from per-particle ``columns`` (CTF_COLUMNS keys; ``names``: their names
    in the file), else the ``given`` values, else the defaults; None without any defocus."""
    given = given or {}
    if "defocus_u_A" not in columns and "defocus_u_A" not in given:
        return None
    out: dict[str, np.ndarray] = {}
    for key in CTF_COLUMNS:
        if key in columns:
            values = pd.to_numeric(pd.Series(np.asarray(columns[key])), errors="coerce").to_numpy(np.float64)
            if not np.all(np.isfinite(values)):
                row = int(np.flatnonzero(~np.isfinite(values))[0])
                raise InputError(f"{path}: CTF value {names.get(key, key)} of row {row + 1} is missing or not "
                                 f"a number; fix the file")
            out[key] = values
        elif key in given:
            out[key] = np.full(n, float(given[key]))
        elif key == "defocus_v_A":
            out[key] = out["defocus_u_A"].copy()
        elif key in OPTIONAL_CTF_DEFAULTS:
            out[key] = np.full(n, OPTIONAL_CTF_DEFAULTS[key])
        elif key == "amp_contrast":
            out[key] = np.full(n, DEFAULT_AMP_CONTRAST)
            notes.append(f"no amplitude contrast given; assuming {DEFAULT_AMP_CONTRAST} (as cryoDRGN)")
        else:
            raise InputError(f"{path}: the CTF needs {names.get(key, key)} ({key}) but it is missing; add it to "
                             f"the file (or pass it as a CTF value)")
    return CTFParams(**out)


def _single_apix(values: np.ndarray, path: Path, notes: list[str]) -> float:
    """One pixel size for the set: the most common; InputError if they differ by more than 1 %."""
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values) & (values > 0)):
        raise InputError(f"{path}: pixel size missing, zero or negative; pass --apix with the pixel size in Å")
    uniq, counts = np.unique(values, return_counts=True)
    if len(uniq) == 1:
        return float(uniq[0])
    if uniq[-1] / uniq[0] > 1.01:
        raise InputError(f"{path}: particles have pixel sizes {uniq.tolist()} Å; rescale them to one pixel "
                         f"size or pass --apix to force one")
    chosen = float(uniq[np.argmax(counts)])
    notes.append(f"pixel sizes {uniq.tolist()} Å differ by under 1 %; using {chosen}")
    return chosen


def _compare_header_apix(stack: ImageStack, pixel: float, notes: list[str]) -> None:
    """Note where the first readable stack's header gives another voxel size than the metadata's
    ``pixel`` (Å), which is the one used. Headers without one (0) or with the placeholder 1 Å
    (what many tools write when they do not know) say nothing."""
    header = stack.header_apix()
    if header <= 0 or header == 1.0 or abs(header - pixel) <= 1e-4 * pixel:
        return
    gap = abs(header - pixel) / pixel
    size = "under 1 %" if gap < 0.01 else f"{100 * gap:.0f} %"
    notes.append(f"pixel size {pixel:.5g} Å in the metadata and {header:.5g} Å in the stack header differ by {size}; "
                 f"using the metadata's {pixel:.5g} Å (pass --apix to choose)")


def _num(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64)
    if not np.all(np.isfinite(values)):
        row = int(np.flatnonzero(~np.isfinite(values))[0])
        raise InputError(f"{path}: {column} of row {row + 1} is missing or not a number; fix the file")
    return values


def _parse_image_names(names: pd.Series, path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``index@stack`` strings → (unique stack names, file id per particle, 0-based index)."""
    fast = _parse_image_names_arrow(names)
    if fast is not None:
        return fast
    text = names.astype(str).str.strip()
    parts = text.str.partition("@")
    has_at = parts[1] == "@"
    number = pd.to_numeric(parts[0].where(has_at, "1"), errors="coerce")
    files = parts[2].where(has_at, parts[0])
    bad = number.isna() | (number < 1) | (files == "") | (number != number.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{path}: rlnImageName {text.iloc[row]!r} of row {row + 1} is not 'index@stack' with a "
                         f"1-based index; fix the STAR file")
    codes, uniques = pd.factorize(files)
    return list(uniques), codes.astype(np.int64), number.to_numpy(np.int64) - 1


def _parse_image_names_arrow(names: pd.Series) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """The same with pyarrow kernels on the column's Arrow strings (10⁶ names: ~200 MB less
    than pandas' per-row string copies); None for anything unusual, which the pandas path
    then parses (and reports)."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc

        text = pc.utf8_trim_whitespace(pa.chunked_array([pa.array(names.array, type=pa.string())])
                                       if not hasattr(names.array, "_pa_array") else names.array._pa_array)
        parts = pc.extract_regex(text, r"^(?P<index>[0-9]+)@(?P<file>.+)$")
        if parts.null_count:
            return None
        index = pc.cast(pc.struct_field(parts, "index"), pa.int64()).to_numpy()
        encoded = pc.dictionary_encode(pc.struct_field(parts, "file")).combine_chunks()
    except Exception:  # not Arrow-backed, no pyarrow, an index past int64, ...
        return None
    if not len(index) or index.min() < 1:
        return None
    files, ids = encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    del text, parts, encoded
    pa.default_memory_pool().release_unused()  # mimalloc keeps freed pages otherwise
    return files, ids, index - 1


class _Resolver:
    """Stack name → existing path: metadata folder, datadir, cwd, the metadata folder's parent
    and grandparent (a RELION job folder sits two levels below the project), then by file name
    alone in the metadata folder and datadir. Falls back to the first candidate (missing)."""

    def __init__(self, meta_path: Path, datadir: str | os.PathLike | None):
        self.folders = [meta_path.parent] + ([Path(datadir)] if datadir else [])
        self.ancestors = list(meta_path.resolve().parents[1:3])
        self.by_name: list[tuple[str, Path]] = []  # (name in the metadata, file found by its name alone)

    def __call__(self, name: str) -> Path:
        raw = Path(name)
        if raw.is_absolute():
            candidates = [raw]
        else:
            candidates = [folder / raw for folder in self.folders] + [raw]
            candidates += [folder / raw for folder in self.ancestors]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        if raw.name != name:  # a path, not a bare name: look for a file of that name
            for candidate in [folder / raw.name for folder in self.folders]:
                if candidate.is_file():
                    self.by_name.append((name, candidate))
                    return candidate
        return candidates[0]

    def note(self, notes: list[str]) -> None:
        """Add one note saying which stacks were found by file name alone (a guess worth checking)."""
        if self.by_name:
            name, found = self.by_name[0]
            more = f" (and {len(self.by_name) - 1} more stack(s) likewise)" if len(self.by_name) > 1 else ""
            notes.append(f"stack {name!r} is not where the image names point; using {found}, a file of the same "
                         f"name{more}; pass --datadir if that is the wrong file")
