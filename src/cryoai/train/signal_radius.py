"""How far out in frequency the images carry signal that a map predicts: the radius the finish's
refinement compares up to.

Refining poses against shells where the images hold almost no signal fits their noise: at
SNR 0.02 (4AKE, 10k) the finish's rounds up to box/4 took the map from 4.80 to 4.99 px while a
round up to shell 11 gave 4.38 px from the same start (``benchmarks/refinement_radius.py``).
The FSC of two halves refined against one map cannot tell where that starts (the fitted noise
is common to both: its 0.5 crossing sat at shell 15), so the measure here uses images the map
was not made from. For each held-out image x and its prediction y = CTF·shift·slice of the map,
shell by shell: the signal the two share, Σ_ring Re(x̄·y), over the noise power of one pixel of
the ring (the mean |x|² there less that signal), averaged over the images: the per-image ring
SNR. Held out, an image's noise does not correlate with the map's, so only shared signal
remains; where the poses fitted noise it is inflated too, but only out to the radius they were
refined to. White noise of σ² per pixel gives Σ_ring |y|²/σ² (tested by hand calculation).
"""

from __future__ import annotations

import numpy as np
import torch

from cryoai.data.training_data import TrainingData
from cryoai.physics.image_model import render_spectra
from cryoai.train.batches import chunked_batches
from cryoai.train.decoder import loss_frequencies

# The refinement compares up to the last shell before the first whose ring SNR (mean over it and
# its two neighbours) falls below MIN_RING_SNR. On 4AKE 10k at SNR 0.02, from the warm-start
# subset's poses, the curve falls through 0.5 at shell 10-11 (3.4, 4.8, 8.0, 6.6, 6.3, 2.7, 1.3,
# 0.9, 0.5, 0.5, 0.35 at shells 2-12), where rounds up to shell 8-11 made the best maps (3.9 px
# against 5.0 at 16); at SNR 0.1 the same structure's curve is 5× higher and stays above 0.5
# past shell 20.
MIN_RING_SNR = 0.5
MIN_FRACTION = 1 / 8  # never below this fraction of the box (8 of 64: 3.93 px in the run above)
MAX_FRACTION = 1 / 4  # nor above the refinement's usual radius (``predict.REFINE_RADIUS``)
HELD_OUT = 1024  # images held out of the map, at most a quarter of the rows


def held_out(n: int, size: int = HELD_OUT) -> np.ndarray:
    """Positions (sorted) of min(size, n // 4) of n rows, evenly spread: the images a map is made
    without, to measure ``ring_snr`` on."""
    k = min(size, n // 4)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64)) if k else np.zeros(0, np.int64)


@torch.no_grad()
def ring_snr(volume, data: TrainingData, rows: np.ndarray, rotations: np.ndarray, origins_A: np.ndarray,
             device: str = "cpu") -> np.ndarray:
    """The per-image ring SNR (module docstring) of ``rows`` at their poses (RELION matrices (n, 3, 3),
    origins (n, 2) Å) against ``volume``, per shell 0 … box/2 of the training box (shells 0 and 1
    are 0: the mean and the lowest shell are normalised away)."""
    box = data.train_box
    idx, freqs = loss_frequencies(box, box // 2, device)
    shell = torch.linalg.norm(freqs * box, dim=1).round().long().clamp(max=box // 2).cpu()
    cross = torch.zeros(box // 2 + 1, dtype=torch.float64)
    power = torch.zeros(box // 2 + 1, dtype=torch.float64)
    for start, b in chunked_batches(data, np.asarray(rows), 256, 0):
        sl = slice(start, start + len(b.indices))
        b = b.to(device)
        x = b.spectra.reshape(len(b.indices), -1)[:, idx]
        y = render_spectra(volume, torch.from_numpy(rotations[sl]).to(device, torch.float32), freqs,
                           b.model_filter(freqs, data.apix),
                           torch.from_numpy(origins_A[sl] / data.apix).to(device, torch.float32))
        cross.index_add_(0, shell, (x.conj() * y).real.sum(0).double().cpu())
        power.index_add_(0, shell, (x.abs() ** 2).sum(0).double().cpu())
    pixels = torch.bincount(shell, minlength=box // 2 + 1).double() * len(rows)
    noise = (power - cross) / pixels.clamp_min(1)  # per pixel: |x|² less the shared signal
    snr = (cross / len(rows)) / noise.clamp_min(1e-30)
    snr[:2] = 0
    return snr.numpy()


def signal_radius(snr: np.ndarray, box: int) -> float:
    """The refinement radius (Fourier px of a ``box``) that ``snr`` (``ring_snr``, shells 0 … box/2)
    allows: the last shell before the first (from shell 2) whose 3-shell mean ring SNR is under
    MIN_RING_SNR, within [MIN_FRACTION, MAX_FRACTION]·box."""
    smooth = np.convolve(snr, np.ones(3) / 3, mode="same")
    below = [s for s in range(2, len(snr) - 1) if smooth[s] < MIN_RING_SNR]
    last = (below[0] - 1) if below else len(snr) - 1
    return float(np.clip(last, MIN_FRACTION * box, MAX_FRACTION * box))
