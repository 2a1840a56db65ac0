"""train/halves: poses moved with a map reproduce the same images from the moved map; the
top-level particles.star of ``--halves`` carries each half's per-particle columns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryoai.data.particles import load_particles
from cryoai.eval.align import Alignment, transform_map
from cryoai.geometry.rotations import random_rotations
from cryoai.phantom import phantom_map
from cryoai.physics.image_model import render_images
from cryoai.physics.slicing import fourier_map
from cryoai.train.halves import move_poses, train_halves
from cryoai.train.run_dir import RunDir
from cryoai.train.run_finish import PARTICLE_COLUMNS
from helpers import tiny_config

BOX, APIX = 32, 4.0


def project(vol: np.ndarray, rotations: np.ndarray, origins_A: np.ndarray) -> np.ndarray:
    """Images (n, L, L) of ``vol`` at RELION poses, by the package's one image model (no CTF)."""
    return render_images(fourier_map(torch.from_numpy(vol)), torch.from_numpy(rotations), BOX, APIX,
                         origins_A=torch.from_numpy(origins_A).float()).numpy()


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("hand", ["same", "flipped"])
def test_moved_poses_reproduce_the_images_of_the_moved_map(hand):
    rng = np.random.default_rng(4)
    vol = phantom_map(BOX, APIX)
    G = random_rotations(1, rng)[0]
    shift = np.array([1.5, -2.0, 2.5])  # voxels (x, y, z)
    moved_map = transform_map(vol, G, shift, hand)  # moved(p) = vol_h(Gᵀ(p − t))
    alignment = Alignment(rotation=G, shift=shift, hand=hand, aligned=moved_map, score=1.0)
    rotations = random_rotations(12, rng)
    origins = rng.normal(0.0, 2.0 * APIX, (12, 2))
    images = project(vol, rotations, origins)

    rot2, origins2 = move_poses(rotations, origins, alignment, APIX)
    err = relative_error(project(moved_map, rot2, origins2), images)
    assert err < 0.05  # the rest is the trilinear resampling in transform_map

    # the check can fail: leaving out the shift's effect on the origins, or the hand, is seen
    assert relative_error(project(moved_map, rot2, origins), images) > 4 * err
    other = "flipped" if hand == "same" else "same"
    rot_wrong, origins_wrong = move_poses(rotations, origins, Alignment(G, shift, other, moved_map, 1.0), APIX)
    assert relative_error(project(moved_map, rot_wrong, origins_wrong), images) > 4 * err


def test_halves_star_carries_each_halfs_particle_columns(tiny_set, tmp_path, one_thread):
    """With --classes 2, OUT/particles.star holds, for every particle, the fit score, rlnSelected,
    contrast scale and class its half wrote (OUT/half{h}/particles.star) and rlnRandomSubset h
    (before, rlnRandomSubset alone)."""
    particles = load_particles(tiny_set / "particles.star")
    run = RunDir(tmp_path / "h", quiet=True)
    try:
        train_halves(particles, tiny_config(steps=3, classes=2), run, "cpu", resume=False, progress=False)
    finally:
        run.close()
    table = load_particles(tmp_path / "h" / "particles.star").table
    assert set(PARTICLE_COLUMNS) | {"rlnRandomSubset"} <= set(table.columns)
    for half in (1, 2):
        rows = np.flatnonzero(table["rlnRandomSubset"].to_numpy() == half)
        own = load_particles(tmp_path / "h" / f"half{half}" / "particles.star").table
        assert len(own) == len(rows) > 0
        for name in PARTICLE_COLUMNS:
            assert np.array_equal(table[name].to_numpy()[rows], own[name].to_numpy()), (half, name)
