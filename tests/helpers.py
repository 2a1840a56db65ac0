"""What several test modules share: the shared data folder, the tiny simulated set and training
settings, correlations. (Fixtures are in conftest.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryoai.phantom import phantom_map
from cryoai.simulate import simulate
from cryoai.train.config import TrainConfig

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the clone


def simulate_tiny(out: Path, n: int = 120) -> Path:
    """``n`` images of the built-in phantom (box 16, 8 Å/px, SNR 10, CTF, shifts σ 4 Å) in ``out``;
    returns ``out``."""
    simulate(phantom_map(16, 8.0), 8.0, n, out, snr=10.0, shift_std_A=4.0, seed=1, progress=False)
    return out


def tiny_config(**overrides) -> TrainConfig:
    """Settings that train the tiny set in seconds: every stage, checkpoint and map in 6 steps."""
    cfg = TrainConfig(train_box=16, encoder_box=16, batch_size=8, steps=6, pretrain_until=0.2, freeze_volume_until=0.4,
                      supervise_until=0.7, march_until=0.7, warm_subset=60, warm_box=8, warm_iterations=2,
                      log_every=2, checkpoint_every=3, volume_every=3, encoder_widths=(4, 8), synthetic_batch=4,
                      final_iterations=1, final_subset=50)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays."""
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image Pearson correlation of two (n, L, L) stacks."""
    a = a - a.mean(axis=(1, 2), keepdims=True)
    b = b - b.mean(axis=(1, 2), keepdims=True)
    return (a * b).sum((1, 2)) / np.sqrt((a * a).sum((1, 2)) * (b * b).sum((1, 2)))


def symmetric_phantom(box: int, symbol: str, seed: int = 7, offset=(0.22, 0.1, 0.08)) -> np.ndarray:
    """A map with point-group symmetry ``symbol`` in RELION's orientation: a small phantom
    subunit moved off the centre by ``offset`` (x, y, z, in boxes), then symmetrised, so the
    copies sit apart as in a ring or a cage (a centred blob would look symmetric under any group)."""
    from cryoai.eval.map_symmetry import symmetrise_map

    sub = phantom_map(box, 1.0, seed=seed, radius_fraction=0.12)
    shift = [int(round(o * box)) for o in offset]
    sub = np.roll(sub, (shift[2], shift[1], shift[0]), axis=(0, 1, 2))
    return symmetrise_map(sub, symbol)
