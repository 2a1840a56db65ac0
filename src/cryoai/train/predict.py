"""Amortised pose prediction: the trained encoder in eval mode over a whole particle set.

Each image and its π-rotated copy go through the encoder and the decoder (``train/decoder.py``)
keeps the better path; a local search against the volume then polishes each pose, from several
in-plane starts per image (``train/hypotheses.py``).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from cryoai.data.training_data import TrainingData
from cryoai.train.batches import chunked_batches
from cryoai.train.decoder import encode_both, loss_frequencies
from cryoai.train.hypotheses import TURNS, refine_hypotheses


REFINE_RADIUS = 1 / 4  # refinement compares frequencies up to this fraction of the box (Nyquist 1/2)


def refinement_radius(box: int, known_to: float) -> float:
    """The radius (Fourier pixels) local refinement compares up to: box/4 (``REFINE_RADIUS``), or
    ``known_to`` if smaller, the radius the volume is known to: the loss radius the training
    reached for a trained volume, Nyquist (box/2) for a direct reconstruction."""
    return min(known_to, REFINE_RADIUS * box)


@torch.no_grad()
def predict_poses(encoder, volume, data: TrainingData, radius: float, symmetric: bool = True,
                  batch_size: int = 256, device: str = "cpu", progress: bool = True,
                  indices: np.ndarray | None = None, refine: bool = True,
                  start_poses: tuple[np.ndarray, np.ndarray] | None = None,
                  workers: int = 0, turns: int = TURNS,
                  signal_to: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Poses for every particle (or ``indices``): RELION matrices (N, 3, 3) and origins in Å.

    The encoder predicts (or ``start_poses`` give, rotations and origins in Å), its decoder
    comparing up to ``radius``, the radius the volume is known to; with ``refine``, a local search
    against the volume polishes each pose up to ``refinement_radius``, and not beyond ``signal_to``
    if given (the radius the images carry signal to, ``train/signal_radius.py``), from ``turns``
    in-plane starts (``hypotheses.refine_hypotheses``; 1: the encoder's pose alone, ``train/refine.py``).
    ``workers`` processes read the next batches meanwhile (``batches``).
    """
    if encoder is not None:
        encoder.eval()
    idx, freqs = loss_frequencies(data.train_box, radius, device)
    known_to = radius if signal_to is None else min(radius, signal_to)
    ridx, rfreqs = loss_frequencies(data.train_box, refinement_radius(data.train_box, known_to), device)
    rows = np.arange(len(data.particles)) if indices is None else np.asarray(indices)
    rotations = np.empty((len(rows), 3, 3), dtype=np.float64)
    origins = np.empty((len(rows), 2), dtype=np.float64)
    stream = chunked_batches(data, rows, batch_size, workers, pin_memory=str(device).startswith("cuda"))
    for start, batch in tqdm(stream, total=-(-len(rows) // batch_size), desc="predict", unit="batch", disable=not progress):
        sl = slice(start, start + batch_size)
        batch = batch.to(device)
        if start_poses is None:
            r, o, *_ = encode_both(encoder, volume, batch, idx, freqs, data.apix, symmetric, device)
        else:
            r = torch.from_numpy(start_poses[0][sl]).to(device, torch.float32)
            o = torch.from_numpy(start_poses[1][sl] / data.apix).to(device, torch.float32)
        if refine:
            target = batch.spectra.to(device).reshape(len(r), -1)[:, ridx]
            c = batch.model_filter(rfreqs, data.apix)  # CTF × whitening: a whitened fit
            r, o = refine_hypotheses(volume, r, o, target, c, rfreqs, turns)
        rotations[sl] = r.cpu().numpy()
        origins[sl] = o.cpu().numpy() * data.apix
    return rotations, origins


def predict_poses_sharded(encoder, volume, data: TrainingData, radius: float, symmetric: bool = True,
                          batch_size: int = 256, device: str = "cpu", progress: bool = True,
                          indices: np.ndarray | None = None, refine: bool = True,
                          start_poses: tuple[np.ndarray, np.ndarray] | None = None,
                          workers: int = 0, turns: int = TURNS,
                          signal_to: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``predict_poses`` under torchrun: each rank predicts its contiguous share of the rows and
    every rank gets all of them back (in order). The same call in a single process."""
    from cryoai.train import distributed as dist

    rows = np.arange(len(data.particles)) if indices is None else np.asarray(indices)
    share = dist.shard_range(len(rows))
    start = None if start_poses is None else (start_poses[0][share], start_poses[1][share])
    rot, origin = predict_poses(encoder, volume, data, radius, symmetric, batch_size, device,
                                progress and dist.is_main(), rows[share], refine, start, workers, turns, signal_to)
    return dist.gather_rows(rot, origin)
