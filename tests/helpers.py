"""What several test modules share: the shared data folder, the tiny simulated set and training
settings, correlations. (Fixtures are in conftest.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryoai.io.star import read_star, write_star
from cryoai.phantom import phantom_map
from cryoai.simulate import simulate
from cryoai.train.config import TrainConfig

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the clone


def simulate_tiny(out: Path, n: int = 120) -> Path:
    """``n`` images of the built-in phantom (box 16, 8 Å/px, SNR 10, CTF, shifts σ 4 Å) in ``out``;
    returns ``out``."""
    simulate(phantom_map(16, 8.0), 8.0, n, out, snr=10.0, shift_std_A=4.0, seed=1, progress=False)
    return out


JUNK_KINDS = ("empty", "ice", "fragment")


def simulate_with_junk(out: Path, n: int, junk_fraction: float, box: int = 16, apix: float = 8.0, snr: float = 1.0,
                       seed: int = 1, volume: np.ndarray | None = None) -> np.ndarray:
    """A set of ``n`` images in ``out`` (particles.star, particles.mrcs), ``junk_fraction`` of them
    junk in equal parts of JUNK_KINDS, shuffled: empty picks (noise alone), ice (3-6 random
    Gaussian blobs, as strong as a particle), fragments (projections of the phantom masked to one
    side of a random plane through it, about a third of its mass), all with the particles' noise
    level (white, ``snr``). Returns each row's kind ("particle" or a junk kind)."""
    import mrcfile

    volume = phantom_map(box, apix) if volume is None else volume
    rng = np.random.default_rng(seed)
    n_junk = int(round(junk_fraction * n))
    kinds = np.array(["particle"] * (n - n_junk) + [JUNK_KINDS[i % 3] for i in range(n_junk)])
    rng.shuffle(kinds)
    made = simulate(volume, apix, n, out / "clean", snr=np.inf, shift_std_A=apix / 2, seed=seed, progress=False)
    with mrcfile.open(out / "clean" / "particles.mrcs") as mrc:
        clean = mrc.data.astype(np.float32)
    grid = np.arange(box) - box // 2
    normal = rng.standard_normal(3)
    z, y, x = np.meshgrid(grid, grid, grid, indexing="ij")
    side = (normal[0] * x + normal[1] * y + normal[2] * z) / np.linalg.norm(normal) > 0.15 * box
    simulate(volume * side, apix, n, out / "fragment", snr=np.inf, shift_std_A=apix / 2,
             seed=seed + 1, progress=False)
    with mrcfile.open(out / "fragment" / "particles.mrcs") as mrc:
        parts = mrc.data.astype(np.float32)
    signal_sd = float(clean.std(axis=(1, 2)).mean())
    images = np.where((kinds == "particle")[:, None, None], clean, 0.0).astype(np.float32)
    images[kinds == "fragment"] = parts[kinds == "fragment"]
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    for i in np.flatnonzero(kinds == "ice"):
        for _ in range(rng.integers(3, 7)):
            cy, cx = rng.uniform(-box / 3, box / 3, 2)
            width = rng.uniform(0.05, 0.15) * box
            images[i] += rng.uniform(0.5, 1.5) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
        images[i] *= signal_sd / images[i].std()
    images += rng.standard_normal(images.shape).astype(np.float32) * signal_sd / np.sqrt(snr)
    with mrcfile.new(out / "particles.mrcs", overwrite=True) as mrc:
        mrc.set_data(images)
        mrc.voxel_size = apix
    star = read_star(out / "clean" / "particles.star")
    star["particles"]["rlnImageName"] = [f"{i + 1:06d}@particles.mrcs" for i in range(n)]
    write_star(out / "particles.star", {"optics": star["optics"], "particles": star["particles"]})
    assert made["n"] == n
    return kinds


def tiny_config(**overrides) -> TrainConfig:
    """Settings that train the tiny set in seconds: every stage, checkpoint and map in 6 steps."""
    cfg = TrainConfig(train_box=16, encoder_box=16, batch_size=8, steps=6, pretrain_until=0.2, freeze_volume_until=0.4,
                      supervise_until=0.7, march_until=0.7, warm_subset=60, warm_box=8, warm_iterations=2,
                      log_every=2, checkpoint_every=3, volume_every=3, encoder_widths=(4, 8), synthetic_batch=4,
                      final_iterations=1, final_subset=50)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def train_tiny(star: Path, out: Path, **overrides) -> dict:
    """A whole ``Trainer`` run (``tiny_config(**overrides)``) of the particles in ``star`` into
    ``out``; returns ``fit``'s poses."""
    from cryoai.data.particles import load_particles
    from cryoai.train.run_dir import RunDir
    from cryoai.train.trainer import Trainer

    run = RunDir(out, quiet=True)
    try:
        return Trainer(load_particles(star), tiny_config(**overrides), run, progress=False).fit()
    finally:
        run.close()


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
