"""Lazy, memory-mapped access to particle images spread over MRC stacks.

Each particle is a (stack file, 0-based index in that file) pair. Stacks are opened with
``mrcfile.mmap`` only when an image from them is first requested (``permissive=True``: some
stacks lack the "MAP " ID) and kept open in a small cache. ``images(indices)`` groups the
requested particles by file and into contiguous runs and reads each run as one slice, so a
dataset larger than RAM works and reading 3 images never touches the rest of the file.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import mrcfile
import numpy as np

from cryoai.errors import InputError

SUPPORTED_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
MAX_OPEN_FILES = 64  # stacks held open at once (one per micrograph is common)


class ImageStack:
    """Images of N particles: ``files[file_ids[i]]``, image ``indices[i]`` (0-based).

    ``box`` is the expected image side in pixels (from metadata), or None to take it from the
    first stack opened; every stack opened later must match it. ``source`` is the metadata file
    the particles came from, named in error messages.
    """

    def __init__(self, files: Sequence[str | os.PathLike], file_ids: np.ndarray, indices: np.ndarray,
                 box: int | None = None, source: str | os.PathLike | None = None):
        self.files = [Path(f) for f in files]
        self.file_ids = np.asarray(file_ids, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.file_ids.shape != self.indices.shape or self.file_ids.ndim != 1:
            raise ValueError("file_ids and indices must be 1D arrays of equal length")
        self.box = box
        self.source = Path(source) if source is not None else None
        self._handles: OrderedDict[int, mrcfile.mrcmemmap.MrcMemmap] = OrderedDict()

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict:  # memory maps do not pickle (DataLoader workers reopen them)
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        return state

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close every open stack."""
        for handle in getattr(self, "_handles", {}).values():
            handle.close()
        if hasattr(self, "_handles"):
            self._handles.clear()

    def subset(self, rows: np.ndarray) -> "ImageStack":
        """The stack restricted to particles ``rows`` (in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        return ImageStack(self.files, self.file_ids[rows], self.indices[rows], self.box, self.source)

    # ---- reading ---------------------------------------------------------------------------
    def images(self, rows, check_finite: bool = True) -> np.ndarray:
        """Images of particles ``rows`` → float32 (n, L, L), in the order given.

        With ``check_finite`` a NaN or infinite pixel raises InputError naming particle and file.
        """
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"particle index out of range for {len(self)} particles")
        rows = rows % max(len(self), 1)
        fids, local = self.file_ids[rows], self.indices[rows]
        order = np.lexsort((local, fids))  # by file, then by index in the file
        fids_s, local_s = fids[order], local[order]
        breaks = np.flatnonzero((np.diff(fids_s) != 0) | (np.diff(local_s) != 1)) + 1
        out: np.ndarray | None = None
        for run in np.split(np.arange(len(rows)), breaks):
            if run.size == 0:
                continue
            fid, lo, hi = int(fids_s[run[0]]), int(local_s[run[0]]), int(local_s[run[-1]])
            data = self._data(fid)
            if lo < 0 or hi >= data.shape[0]:
                bad = hi if hi >= data.shape[0] else lo
                raise InputError(
                    f"{self.files[fid]}: image {bad + 1} (1-based) requested but the stack holds "
                    f"{data.shape[0]} images{self._by()}; fix the image names or re-extract the particles")
            block = np.asarray(data[lo:hi + 1], dtype=np.float32)
            if check_finite:
                finite = np.isfinite(block).all(axis=(1, 2))
                if not finite.all():
                    k = int(np.flatnonzero(~finite)[0])
                    raise InputError(
                        f"{self.files[fid]}: image {lo + k + 1} (1-based; particle {int(rows[order[run[k]]])}) "
                        f"holds NaN or infinite pixels; remove that particle or re-extract the stack")
            if out is None:
                out = np.empty((len(rows),) + block.shape[1:], dtype=np.float32)
            out[order[run]] = block
        if out is None:
            L = self.box or 0
            out = np.empty((0, L, L), dtype=np.float32)
        return out

    def _by(self) -> str:
        return f" (referenced by {self.source})" if self.source else ""

    def _data(self, fid: int) -> np.ndarray:
        """The memory-mapped (n, L, L) array of stack ``fid``, opened and checked on first use."""
        if fid in self._handles:
            self._handles.move_to_end(fid)
            handle = self._handles[fid]
        else:
            handle = self._open(self.files[fid])
            self._handles[fid] = handle
            if len(self._handles) > MAX_OPEN_FILES:
                self._handles.popitem(last=False)[1].close()
        h = handle.header
        return handle.data.reshape(-1, int(h.ny), int(h.nx))

    def _open(self, path: Path) -> "mrcfile.mrcmemmap.MrcMemmap":
        """Open one stack and check it: exists, is MRC, not truncated, square, right box."""
        by = self._by()
        if not path.is_file():
            raise InputError(f"{path}: particle stack not found{by}; pass --datadir with the folder "
                             f"the image paths are relative to, or restore the file")
        if not _plausible_header(path):
            raise InputError(f"{path}: not an MRC stack (no valid MRC header){by}; give MRC/MRCS particle stacks")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                handle = mrcfile.mmap(path, mode="r", permissive=True)
        except (ValueError, OSError, EOFError) as e:
            reason = " ".join(str(e).split())[:200]
            raise InputError(f"{path}: not an MRC stack ({reason}){by}; give MRC/MRCS particle stacks") from None
        try:
            self._check_header(path, handle)
        except InputError:
            handle.close()
            raise
        return handle

    def _check_header(self, path: Path, handle) -> None:
        h, by = handle.header, self._by()
        nx, ny, nz, mode = int(h.nx), int(h.ny), int(h.nz), int(h.mode)
        has_id = bytes(h.map).startswith(b"MAP")
        dims_ok = 0 < nx <= 1 << 16 and 0 < ny <= 1 << 16 and 0 < nz < 1 << 31
        if not dims_ok or (mode not in SUPPORTED_MODES and not has_id):
            raise InputError(f"{path}: not an MRC stack (implausible header){by}; give MRC/MRCS particle stacks")
        if mode not in SUPPORTED_MODES:
            raise InputError(f"{path}: MRC mode {mode} is not supported (only {sorted(SUPPORTED_MODES)}){by}; "
                             f"convert the stack to float32 (mode 2)")
        if handle.data is None:
            expected = 1024 + int(h.nsymbt) + nx * ny * nz * np.dtype(SUPPORTED_MODES[mode]).itemsize
            size = path.stat().st_size
            if size < expected:
                raise InputError(f"{path}: truncated stack: {size} bytes but the header implies {expected} "
                                 f"({nz} images of {nx}x{ny}){by}; copy or extract the file again")
            raise InputError(f"{path}: not a readable MRC stack{by}; give MRC/MRCS particle stacks")
        if nx != ny:
            raise InputError(f"{path}: images are {nx}x{ny} pixels, not square{by}; re-extract with a square box")
        if self.box is None:
            self.box = nx
        elif nx != self.box:
            raise InputError(f"{path}: images are {nx} px but other stacks/metadata say {self.box} px{by}; "
                             f"re-extract all particles with one box size")

    # ---- validation without raising --------------------------------------------------------
    def header_box(self, max_files: int = 10) -> int:
        """Image side from the first readable stack among the first ``max_files``; 0 if none."""
        for fid in range(min(len(self.files), max_files)):
            try:
                return int(self._data(fid).shape[-1])
            except InputError:
                continue
        return 0

    def header_apix(self, max_files: int = 10) -> float:
        """Voxel size (Å) in the header of the first readable stack among the first ``max_files``;
        0.0 if none is readable or the header has none."""
        for fid in range(min(len(self.files), max_files)):
            try:
                self._data(fid)
            except InputError:
                continue
            return float(self._handles[fid].voxel_size.x)
        return 0.0

    def scan(self) -> tuple[list[str], np.ndarray]:
        """Check every referenced stack without raising → (problems, ok).

        ``problems`` lists every file-level problem at once (missing, not MRC, truncated,
        non-square, mixed box, indices past the end), one message each; ``ok`` is a boolean per
        particle: its stack opens and its index lies inside it. Opens headers only.
        """
        found: list[str] = []
        max_index = np.full(len(self.files), -1, dtype=np.int64)
        np.maximum.at(max_index, self.file_ids, self.indices)
        n_images = np.full(len(self.files), -1, dtype=np.int64)
        for fid, path in enumerate(self.files):
            if max_index[fid] < 0:
                continue  # no particle refers to it
            try:
                n_images[fid] = n = self._data(fid).shape[0]
            except InputError as e:
                found.append(str(e))
                continue
            if max_index[fid] >= n:
                count = int(np.sum((self.file_ids == fid) & (self.indices >= n)))
                found.append(f"{path}: {count} particle(s) refer to images past the end (up to image "
                             f"{max_index[fid] + 1}, the stack holds {n}){self._by()}; fix the image names "
                             f"or re-extract the particles")
        ok = self.indices < n_images[self.file_ids]
        return found, ok

    def disk_bytes(self) -> int:
        """Total size on disk of the (existing) stack files referred to."""
        used = np.unique(self.file_ids)
        return int(sum(self.files[f].stat().st_size for f in used if self.files[f].is_file()))


def _plausible_header(path: Path) -> bool:
    """Cheap test of the 1024-byte MRC header (either byte order) before mrcfile maps the file."""
    with open(path, "rb") as f:
        head = f.read(1024)
    if len(head) < 1024:
        return False
    for order in "<>":
        nx, ny, nz, mode = np.frombuffer(head, dtype=f"{order}i4", count=4)
        nsymbt = int(np.frombuffer(head, dtype=f"{order}i4", count=1, offset=92)[0])
        if 0 < nx <= 1 << 16 and 0 < ny <= 1 << 16 and 0 < nz and mode in (0, 1, 2, 3, 4, 6, 12, 101) \
                and 0 <= nsymbt < 1 << 30:
            return True
    return False
