"""Pose supervision: the pose loss, and synthetic images with the data's noise level."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
import torch

from cryoai.data.particles import load_particles
from cryoai.geometry.rotations import euler_to_matrix, random_rotations
from cryoai.geometry.symmetry import point_group
from cryoai.losses import HALF_TURN
from cryoai.models.voxel import VoxelVolume
from cryoai.data.training_data import TrainingData
from cryoai.train.supervision import pose_loss, subset_pose_loss, synthetic_batch


def test_pose_loss_by_hand():
    """|R − R*|²_F + 0.1·|o − o*|²: I against a half turn about z is 4 + 4, a 1-px shift 0.1."""
    rot = torch.eye(3).expand(2, 3, 3)
    loss = pose_loss(rot, torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.stack([HALF_TURN, torch.eye(3)]), torch.zeros(2, 2))
    assert loss.tolist() == pytest.approx([8.1, 0.0])


def test_subset_pose_loss_supervises_the_rotated_copy_with_the_turned_pose():
    """Under the symmetric loss, the π-rotated copy's target is HALF_TURN·R* with origin −o*."""
    target_r, target_o = torch.eye(3)[None], torch.tensor([[2.0, -1.0]])
    rot_both = torch.stack([torch.eye(3), HALF_TURN])  # the image, then its rotated copy: both exact
    origin_both = torch.tensor([[2.0, -1.0], [-2.0, 1.0]])
    sel = torch.tensor([0])
    assert float(subset_pose_loss(rot_both, origin_both, sel, target_r, target_o, symmetric=True)) == pytest.approx(0.0)
    wrong = torch.stack([torch.eye(3), torch.eye(3)])
    assert float(subset_pose_loss(wrong, origin_both, sel, target_r, target_o, symmetric=True)) == pytest.approx(8.0)
    assert float(subset_pose_loss(wrong[:1], origin_both[:1], sel, target_r, target_o, symmetric=False)) == 0.0


def test_pose_loss_under_a_group_takes_the_nearest_equivalent_target():
    """Under C4, a prediction at R*·Sᵀ costs nothing (only its origin error counts), an in-plane
    turn of R* (S·R*: another image) still does; with C1's operators, the loss is the C1 loss."""
    ops = torch.from_numpy(point_group("C4")).float()
    target = torch.from_numpy(random_rotations(5, np.random.default_rng(2))).float()
    origins, target_o = torch.randn(5, 2), torch.randn(5, 2)
    shift_only = pose_loss(target, origins, target, target_o)
    for S in ops:
        assert torch.allclose(pose_loss(target @ S.T, origins, target, target_o, ops), shift_only, atol=1e-5)
    side = torch.from_numpy(euler_to_matrix(0.0, 90.0, 0.0)).float()[None]  # a side view: turning it in-plane is no equivalent
    assert float(pose_loss(ops[1] @ side, torch.zeros(1, 2), side, torch.zeros(1, 2), ops)) > 1.0
    pred = torch.from_numpy(random_rotations(5, np.random.default_rng(3))).float()
    plain = pose_loss(pred, origins, target, target_o)
    assert torch.allclose(pose_loss(pred, origins, target, target_o, torch.eye(3)[None]), plain)
    assert (pose_loss(pred, origins, target, target_o, ops) <= plain + 1e-6).all()
    rot_both, origin_both = torch.cat([target @ ops[2].T, HALF_TURN @ target @ ops[3].T]), torch.cat([target_o, -target_o])
    sup = subset_pose_loss(rot_both, origin_both, torch.arange(5), target, target_o, True, ops)
    assert torch.allclose(sup, torch.zeros(5), atol=1e-5)  # the image and its π-rotated copy, each at an equivalent


@pytest.fixture(scope="module")
def noise_data(tmp_path_factory):
    """A stack of pure white noise (box 32), prepared for training at box 32, encoder box 16."""
    path = tmp_path_factory.mktemp("noise") / "noise.mrcs"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.random.default_rng(0).standard_normal((400, 32, 32)).astype(np.float32))
        mrc.voxel_size = 4.0
    return TrainingData(load_particles(path, apix=4.0), 32, 16)


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_synthetic_images_carry_the_noise_variance_asked_for(noise_data, fraction):
    """Rendered from an empty volume, a synthetic batch is all noise: the encoder images it sees
    have ``noise_fraction`` times the variance of a pure-noise data batch's (half of what was asked
    while the noise was complex per coefficient and only the real image kept)."""
    data_var = float(noise_data.batch(np.arange(400)).images.var())
    images, rot, origin = synthetic_batch(VoxelVolume(32, 2), noise_data, 400, 1.0, seed=0, step=0,
                                          noise_fraction=fraction)
    assert images.shape == (400, 16, 16) and rot.shape == (400, 3, 3) and origin.shape == (400, 2)
    assert float(images.var()) / data_var == pytest.approx(fraction, abs=0.05)


def test_synthetic_batch_is_a_function_of_seed_and_step(noise_data):
    volume = VoxelVolume(32, 2)
    a, b, c = (synthetic_batch(volume, noise_data, 8, 1.0, seed=0, step=s)[0] for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)
