"""A preprocessed particle cache: images Fourier-cropped to the training box and normalised once.

``CACHE/images.npy`` holds (N, B, B) real images, ``(x_B − mean) / std`` where x_B is the image
Fourier-cropped to B and (mean, std) are the statistics ``TrainingData`` computes (a fixed
sample of 512 images, seed 0), without the polarity sign (``--invert`` is applied when read).
``CACHE/cache.json`` records the box, pixel size, statistics, dtype and a fingerprint of the
particle set it was made from (number of particles, stack names, sizes and times, image
indices), so a cache made from other particles is refused instead of silently used.

float16 (half the disk and read cost) unless it loses more than ``MAX_F16_ERROR`` relative RMS
on a sample of the normalised images; then float32. The cache is written in chunks with plain
file writes (constant memory) into a temporary folder renamed into place when complete, and
read with ``os.pread`` of coalesced row runs (no memory map, so reading 10⁶ images does not
count their pages against the process).

Known difference to reading the stacks: when B < L, ``TrainingData`` keeps the two Nyquist lines
of the cropped spectrum as cropped (not Hermitian); a real image cannot hold that, so the cache
gives their Hermitian part. The loss and the encoder use frequencies inside |k| ≤ B/2 and B/2
of the encoder box, so at most two coefficients of a spectrum differ.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryoai.errors import InputError

FORMAT = "cryoai-particle-cache-1"
MAX_F16_ERROR = 1e-3  # relative RMS error above which the cache is stored as float32
META, IMAGES = "cache.json", "images.npy"


def fingerprint(particles) -> str:
    """Identity of a particle set's images: count, stack names/sizes/times, per-row (file, index)."""
    stack = particles.stack
    h = hashlib.sha256()
    h.update(f"{len(particles)} {particles.box}\n".encode())
    for f in stack.files:
        st = f.stat() if f.is_file() else None
        h.update(f"{f.name} {st.st_size if st else -1} {st.st_mtime_ns if st else -1}\n".encode())
    h.update(np.ascontiguousarray(stack.file_ids, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(stack.indices, dtype=np.int64).tobytes())
    return h.hexdigest()


@dataclass
class ParticleCache:
    """An opened cache; ``rows`` maps particle rows of a subset to cache rows (None: identity)."""

    path: Path
    meta: dict
    rows: np.ndarray | None = None
    _fd: int | None = None

    @property
    def box(self) -> int:
        return int(self.meta["box"])

    @property
    def mean(self) -> float:
        return float(self.meta["mean"])

    @property
    def std(self) -> float:
        return float(self.meta["std"])

    def __len__(self) -> int:
        return int(self.meta["n"]) if self.rows is None else len(self.rows)

    def __getstate__(self) -> dict:  # file descriptors do not pickle (DataLoader workers reopen)
        return {**self.__dict__, "_fd": None}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def subset(self, rows: np.ndarray) -> "ParticleCache":
        rows = np.asarray(rows, dtype=np.int64)
        return ParticleCache(self.path, self.meta, rows if self.rows is None else self.rows[rows])

    def check(self, particles, train_box: int) -> None:
        """InputError unless this cache holds ``particles`` at ``train_box``."""
        if self.rows is None and self.meta["fingerprint"] != fingerprint(particles):  # subsets: checked whole
            raise InputError(f"{self.path}: the cache was made from other particles or older stacks "
                             f"({self.meta['source']}, {self.meta['n']} particles); rerun cryoai preprocess on "
                             f"{particles.path}")
        if train_box != self.box:
            raise InputError(f"{self.path}: the cache holds images at box {self.box} px but training uses box "
                             f"{train_box} px; pass --train-box {self.box} or rerun cryoai preprocess --box {train_box}")

    def images(self, rows) -> np.ndarray:
        """Normalised images of particles ``rows`` → float32 (n, B, B), in the order given."""
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        cache_rows = rows if self.rows is None else self.rows[rows]
        if self._fd is None:
            self._fd = os.open(self.path / IMAGES, os.O_RDONLY)
        dtype, B = np.dtype(self.meta["dtype"]), self.box
        size, offset = B * B * dtype.itemsize, int(self.meta["offset"])
        order = np.argsort(cache_rows, kind="stable")
        sorted_rows = cache_rows[order]
        breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
        out = np.empty((len(rows), B, B), dtype=np.float32)
        for run in np.split(np.arange(len(rows)), breaks):
            if run.size == 0:
                continue
            lo = int(sorted_rows[run[0]])
            raw = os.pread(self._fd, size * run.size, offset + lo * size)
            if len(raw) != size * run.size:
                raise InputError(f"{self.path / IMAGES}: truncated cache; rerun cryoai preprocess")
            out[order[run]] = np.frombuffer(raw, dtype=dtype).reshape(run.size, B, B)
        return out


def open_cache(path: str | os.PathLike) -> ParticleCache:
    """Open a cache folder (InputError if it is missing or not a complete cache)."""
    path = Path(path)
    if not (path / META).is_file() or not (path / IMAGES).is_file():
        raise InputError(f"{path}: not a particle cache (no {META} and {IMAGES}); make one with cryoai preprocess")
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path / META}: unreadable cache description ({e}); rerun cryoai preprocess") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: cache format {meta.get('format')!r}, expected {FORMAT!r}; rerun cryoai preprocess")
    expected = int(meta["offset"]) + int(meta["n"]) * int(meta["box"]) ** 2 * np.dtype(meta["dtype"]).itemsize
    if (path / IMAGES).stat().st_size != expected:
        raise InputError(f"{path / IMAGES}: {(path / IMAGES).stat().st_size} bytes, expected {expected}; "
                         f"rerun cryoai preprocess")
    return ParticleCache(path, meta)


def attach_cache(particles, path: str | os.PathLike, train_box: int):
    """``particles`` with ``cache`` set to the checked cache at ``path`` (TrainingData reads it)."""
    from dataclasses import replace

    cache = open_cache(path)
    cache.check(particles, min(train_box, particles.box))
    return replace(particles, cache=cache)


def float16_error(images: np.ndarray) -> float:
    """Relative RMS error of storing ``images`` as float16."""
    x = np.asarray(images, dtype=np.float64)
    err = x - x.astype(np.float16).astype(np.float64)
    return float(np.sqrt(np.mean(err**2) / max(np.mean(x**2), 1e-300)))


def write_cache(particles, out: str | os.PathLike, box: int | None = None, chunk: int = 512,
                progress: bool = True, log=print) -> ParticleCache:
    """Preprocess every particle into a cache folder ``out`` (atomically; constant memory).

    ``box``: the training box (default min(L, 64), what ``cryoai train`` uses on a CPU).
    """
    from tqdm import tqdm

    from cryoai.data.training_data import TrainingData

    out = Path(out)
    box = min(box or 64, particles.box)
    data = TrainingData(replace_cache(particles, None), box, box)
    n = len(particles)
    probe = data.normalised_images(np.arange(min(n, 512)))
    err16 = float16_error(probe)
    dtype = np.dtype(np.float16 if err16 <= MAX_F16_ERROR else np.float32)
    log(f"float16 vs float32 on {len(probe)} normalised images: relative RMS error {err16:.2e} "
        f"(limit {MAX_F16_ERROR:g}) → storing {dtype.name}")
    if out.exists() and (not out.is_dir() or (not (out / META).is_file() and any(out.iterdir()))):
        raise InputError(f"{out}: exists and is not a particle cache; choose another -o (nothing was overwritten)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as e:
        raise InputError(f"cannot write to {out.parent}: {e.strerror}; choose a writable output folder") from None
    try:
        t0 = time.perf_counter()
        with open(tmp / IMAGES, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                     "fortran_order": False, "shape": (n, box, box)})
            offset = f.tell()
            for start in tqdm(range(0, n, chunk), desc="preprocess", unit="chunk", disable=not progress):
                f.write(data.normalised_images(np.arange(start, min(start + chunk, n))).astype(dtype).tobytes())
        meta = {"format": FORMAT, "n": n, "box": box, "original_box": particles.box,
                "apix": data.apix, "original_apix": particles.apix, "mean": data.mean, "std": data.std,
                "dtype": dtype.name, "offset": offset, "float16_rel_rms_error": err16,
                "source": str(Path(particles.path).resolve()), "fingerprint": fingerprint(particles),
                "seconds": time.perf_counter() - t0}
        (tmp / META).write_text(json.dumps(meta, indent=1) + "\n")
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old.{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_cache(out)


def replace_cache(particles, cache):
    from dataclasses import replace

    return replace(particles, cache=cache)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
