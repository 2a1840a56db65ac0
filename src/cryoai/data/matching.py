"""Matching the particles of two files (predicted poses and ground truth, say) by image name:
rlnImageName (cryoSPARC .cs: blob/idx and blob/path), exactly or else by image index and stack
file name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryoai.errors import InputError


def particle_keys(particles) -> pd.Series:
    """One name per particle: rlnImageName, or for cryoSPARC ``(blob/idx + 1)@blob/path``."""
    t = particles.table
    if "rlnImageName" in t.columns:
        return t["rlnImageName"].astype(str).str.strip().reset_index(drop=True)
    if {"blob/idx", "blob/path"} <= set(t.columns):
        idx = (t["blob/idx"].astype(np.int64) + 1).astype(str)
        return (idx + "@" + t["blob/path"].astype(str).str.lstrip(">")).reset_index(drop=True)
    raise InputError(f"{particles.path}: no rlnImageName (or blob/idx, blob/path) to match particles by")


def _short(keys: pd.Series) -> pd.Series:
    """``index@path`` → ``index@file name`` with the index as an integer (000012@a/b.mrcs → 12@b.mrcs)."""
    parts = keys.str.split("@", n=1, expand=True)
    if parts.shape[1] < 2:
        return keys
    idx = pd.to_numeric(parts[0], errors="coerce")
    names = parts[1].fillna("").map(lambda p: Path(p).name)
    return idx.map(lambda i: "" if pd.isna(i) else str(int(i))) + "@" + names


def match_particles(pred: pd.Series, truth: pd.Series, pred_path, truth_path) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (into pred, into truth) of the particles both files hold."""
    best: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    for kp, kt in ((pred, truth), (_short(pred), _short(truth))):
        if kt.duplicated().any():
            continue
        pos = pd.Index(kt).get_indexer(kp)
        ok = np.flatnonzero(pos >= 0)
        if len(ok) > len(best[0]):
            best = (ok, pos[ok])
    if truth.duplicated().any() and _short(truth).duplicated().any():
        raise InputError(f"{truth_path}: image names repeat, so particles cannot be matched; remove duplicates")
    if len(best[0]) == 0:
        raise InputError(f"{pred_path} and {truth_path} share no particle (e.g. {pred.iloc[0]!r} vs "
                         f"{truth.iloc[0]!r}); give the ground truth of the same particles")
    return best
