"""``ParticleSet``: the metadata of a particle set (one row per particle) with lazy images.

Units: pixel size in Å/px, box in px, CTF a ``physics.ctf.CTFParams`` record (the units in its
field names), origins in Å with the sign of RELION's ``rlnOriginX/YAngst`` (shifting an image by +origin centres the particle),
rotations as RELION matrices A (see ``shared/CONVENTIONS.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from cryoai.io.stack import ImageStack
from cryoai.physics.ctf import CTFParams


@dataclass
class ParticleSet:
    """Particles from a STAR, .cs or bare stack file.

    ``table`` holds every input column (STAR names; for .cs the fields, shaped ones split into
    ``name[i]``) and is passed through on export. ``optics`` is the RELION 3.1+ optics block or
    None. ``ctf`` is a ``CTFParams`` of float64 arrays (N,) or None when the input has no CTF.
    ``rotations`` (N, 3, 3) and ``origins_A`` (N, 2) are None when the input carries no poses /
    no origins. ``box`` is 0 only when neither metadata nor any stack tells it (stacks absent).
    ``notes`` lists assumptions made while loading (e.g. a defaulted amplitude contrast).
    ``cache``, when set (``data.cache.attach_cache``), gives ``TrainingData`` preprocessed images.
    """

    path: Path
    table: pd.DataFrame
    optics: pd.DataFrame | None
    box: int
    apix: float
    ctf: CTFParams | None
    rotations: np.ndarray | None
    origins_A: np.ndarray | None
    stack: ImageStack
    notes: list[str] = field(default_factory=list)
    cache: object | None = None  # a data.cache.ParticleCache (preprocessed images) or None

    def __len__(self) -> int:
        return len(self.table)

    def images(self, indices) -> np.ndarray:
        """Images of the particles ``indices`` → float32 (n, L, L), in the order given."""
        return self.stack.images(indices)

    def subset(self, indices) -> "ParticleSet":
        """A new set with rows ``indices`` (any order, e.g. a half set); images stay lazy."""
        rows = np.asarray(indices)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        pick = (lambda a: None if a is None else a[rows])
        return replace(
            self,
            table=self.table.iloc[rows].reset_index(drop=True),
            ctf=pick(self.ctf),
            rotations=pick(self.rotations),
            origins_A=pick(self.origins_A),
            stack=self.stack.subset(rows),
            cache=None if self.cache is None else self.cache.subset(rows),
            notes=list(self.notes),
        )
