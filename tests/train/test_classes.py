"""Multi-class ab initio (train/classes.py): two molecules mixed 50/50 fall into two classes."""

from __future__ import annotations

import numpy as np
import pytest

from cryoai.data.particles import load_particles
from cryoai.data.training_data import TrainingData
from cryoai.geometry.rotations import random_rotations
from cryoai.io.star import read_star, write_star
from cryoai.models.voxel import VoxelVolume
from cryoai.phantom import phantom_map
from cryoai.simulate import simulate
from cryoai.train.classes import classify
from cryoai.train.finish import PoseSettings, load_reconstruction


def two_molecules(out, n_each: int, snr: float, box: int = 16, sizes: tuple[float, float] = (0.3, 0.3)):
    """``n_each`` images of each of two phantoms (different seeds: different chains, filling
    ``sizes`` of the box) in one STAR/stack at ``box`` (128 Å), alternating rows; returns the
    molecule (0, 1) of each row."""
    import mrcfile

    stacks, tables = [], []
    apix = 128.0 / box
    for m, (seed, size) in enumerate(zip((7, 21), sizes)):
        simulate(phantom_map(box, apix, seed=seed, radius_fraction=size), apix, n_each, out / f"m{m}", snr=snr,
                 shift_std_A=4.0,
                 seed=m + 1, progress=False)
        with mrcfile.open(out / f"m{m}" / "particles.mrcs") as mrc:
            stacks.append(mrc.data.copy())
        tables.append(read_star(out / f"m{m}" / "particles.star"))
    order = np.argsort(np.r_[np.arange(n_each) * 2, np.arange(n_each) * 2 + 1])
    images = np.concatenate(stacks)[order]
    particles = np.concatenate([tables[0]["particles"].to_numpy(), tables[1]["particles"].to_numpy()])[order]
    table = tables[0]["particles"].iloc[:0].copy()
    table = table.reindex(range(len(images)))
    table[:] = particles
    table["rlnImageName"] = [f"{i + 1:06d}@particles.mrcs" for i in range(len(images))]
    with mrcfile.new(out / "particles.mrcs", overwrite=True) as mrc:
        mrc.set_data(images.astype(np.float32))
    write_star(out / "particles.star", {"optics": tables[0]["optics"], "particles": table.infer_objects()})
    return np.r_[np.zeros(n_each, int), np.ones(n_each, int)][order]


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    molecule = two_molecules(out, 100, snr=2.0, box=32)
    return TrainingData(load_particles(out / "particles.star"), 32, 32), molecule


def test_two_classes_separate_two_molecules(mixture, one_thread):
    """As after a single-class run that fitted molecule 0: its particles at their true poses,
    molecule 1's at random poses, the map reconstructed from all. Two classes sort the particles
    by molecule with ≥ 90 % purity (measured 0.91; 0.83 when the search is at box 16, where the
    two globular phantoms look too much alike), and every particle gets a class."""
    data, molecule = mixture
    p = data.particles
    rot = p.rotations.copy()
    rot[molecule == 1] = random_rotations(int((molecule == 1).sum()), np.random.default_rng(0))
    poses = (rot, p.origins_A.copy())
    how = PoseSettings(16.0, True)
    volume = VoxelVolume(32)
    rows = np.arange(len(p))
    load_reconstruction(volume, data, rows, poses, how)
    lines = []
    result = classify(volume, data, rows, poses, 2, how, rounds=4, log=lines.append)
    assert set(result.labels) == {1, 2} and len(result.volumes) == 2
    agree = np.mean(result.labels - 1 == molecule)
    purity = max(agree, 1 - agree)
    assert purity >= 0.9, (purity, lines)
    assert "seeds" in lines[0] and "sizes" in lines[1] and "2 classes" in lines[-1]


def test_train_with_two_classes_writes_them(tiny_set, tmp_path):
    """``classes=2`` in a (6-step) run: a map per class and rlnClassNumber 1 or 2 for every kept
    particle (0 for those not kept) in particles.star."""
    import starfile

    from helpers import train_tiny

    train_tiny(tiny_set / "particles.star", tmp_path / "run", classes=2)
    table = starfile.read(tmp_path / "run" / "particles.star")["particles"]
    classes, kept = table["rlnClassNumber"].to_numpy(), table["rlnSelected"].to_numpy()
    assert set(classes[kept == 1]) <= {1, 2} and (classes[kept == 0] == 0).all()
    assert (tmp_path / "run" / "volume_class1.mrc").is_file() and (tmp_path / "run" / "volume_class2.mrc").is_file()
