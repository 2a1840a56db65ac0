"""train/halves.move_poses: poses moved with a map reproduce the same images from the moved map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryoai.eval.align import Alignment, transform_map
from cryoai.geometry.rotations import random_rotations
from cryoai.phantom import phantom_map
from cryoai.physics.image_model import render_images
from cryoai.physics.slicing import fourier_map
from cryoai.train.halves import move_poses

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
