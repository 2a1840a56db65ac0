"""Streams of training batches (``data/training_data.py``) in a given order of rows, read ahead by
DataLoader worker processes where that is safe."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator

import numpy as np
from torch.utils.data import DataLoader, Dataset

from cryoai.data.training_data import Batch, TrainingData
from cryoai.train import distributed


class _BatchesOfRows(Dataset):
    """Item i: the batch of rows ``rows_of(i)``, for i < count."""

    def __init__(self, data: TrainingData, rows_of: Callable[[int], np.ndarray], count: int):
        self.data, self.rows_of, self.count = data, rows_of, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Batch:
        return self.data.batch(self.rows_of(i))


def batches(data: TrainingData, rows_of: Callable[[int], np.ndarray], count: int, workers: int = 0,
            pin_memory: bool = False) -> Iterator[Batch]:
    """The batches of rows ``rows_of(0)``, ``rows_of(1)``, … ``rows_of(count − 1)``, in order.

    With ``workers`` > 0, DataLoader worker processes read, crop and normalise the next batches
    while the caller computes on this one (``pin_memory``: page-locked, for a GPU). Workers are
    forked, so ``rows_of`` and the memory-mapped stacks are shared, not pickled; where fork is
    unavailable (macOS, Windows) the batches are made in this process. Either way the batches
    are the same.

    Under torchrun (a process group is active) the batches are also made in this process: a
    child forked from a rank whose process-group threads are running can hang in Python's
    after-fork start-up, waiting on the interpreter's thread-state lock (seen with gloo under
    CPython 3.11.7, in about 1 of 20 runs of tests/train/test_distributed.py), and that stalls every rank.
    """
    if workers <= 0 or "fork" not in multiprocessing.get_all_start_methods() or distributed.active():
        return (data.batch(rows_of(i)) for i in range(count))
    loader = DataLoader(_BatchesOfRows(data, rows_of, count), batch_size=None, num_workers=workers,
                        pin_memory=pin_memory, multiprocessing_context="fork", prefetch_factor=2)
    return iter(loader)


def chunked_batches(data: TrainingData, rows: np.ndarray, size: int, workers: int = 0,
                    pin_memory: bool = False) -> Iterator[tuple[int, Batch]]:
    """(start, batch of rows[start : start + size]) for start = 0, size, 2·size, … (``batches``)."""
    starts = range(0, len(rows), size)
    return zip(starts, batches(data, lambda i: rows[starts[i] : starts[i] + size], len(starts), workers, pin_memory))
