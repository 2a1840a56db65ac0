"""The symmetric loss's building blocks against independent facts: a half turn about pixel L//2
moves pixel c + d to c − d, conjugates the centred spectrum (numpy FFT), and equals the image
rendered at pose Rz(π)·A with the origin negated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryoai.geometry.rotations import random_rotations
from cryoai.losses import HALF_TURN, poses_from_winner, rotate_half_turn, symmetric_loss
from cryoai.physics.ctf import CTFParams
from cryoai.physics.image_model import render_images
from cryoai.physics.slicing import fourier_map


def asymmetric_map(box: int) -> np.ndarray:
    """Three Gaussian blobs of different sizes and weights: no symmetry at all."""
    g = np.arange(box) - box // 2
    Z, Y, X = np.meshgrid(g, g, g, indexing="ij")
    blobs = [((4.0, -2.0, 1.0), 2.0, 1.0), ((-3.0, -4.0, 3.0), 1.5, 0.6), ((1.0, 5.0, -4.0), 2.5, 0.8)]
    vol = sum(w * np.exp(-((X - x) ** 2 + (Y - y) ** 2 + (Z - z) ** 2) / (2 * s * s)) for (x, y, z), s, w in blobs)
    return vol.astype(np.float32)


def test_half_turn_constant_is_rz_pi():
    """HALF_TURN is the rotation by π about z: diag(−1, −1, 1), its own inverse."""
    c, s = np.cos(np.pi), np.sin(np.pi)
    np.testing.assert_allclose(HALF_TURN.numpy(), [[c, -s, 0], [s, c, 0], [0, 0, 1]], atol=1e-7)
    np.testing.assert_allclose((HALF_TURN @ HALF_TURN).numpy(), np.eye(3))


@pytest.mark.parametrize("box", [8, 9])
def test_rotate_half_turn_moves_pixels_through_the_centre(box):
    """A single bright pixel at (c + dx, c + dy) goes to (c − dx, c − dy), c = L//2; twice is the identity."""
    c = box // 2
    for dx, dy in [(0, 0), (1, 0), (2, -3), (-c + 1, c - 1)]:
        img = torch.zeros(box, box)
        img[c + dy, c + dx] = 1.0
        out = rotate_half_turn(img)
        assert out[c - dy, c - dx] == 1.0 and out.sum() == 1.0
    batch = torch.randn(3, 2, box, box)
    torch.testing.assert_close(rotate_half_turn(rotate_half_turn(batch)), batch, rtol=0, atol=0)


@pytest.mark.parametrize("box", [8, 9])
def test_rotate_half_turn_conjugates_the_centred_spectrum(box):
    """The centred DFT (numpy, origin at pixel L//2) of the rotated image is the conjugate of the original's."""
    img = np.random.default_rng(box).standard_normal((box, box))

    def spectrum(x):
        return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x)))

    rotated = rotate_half_turn(torch.from_numpy(img)).numpy()
    np.testing.assert_allclose(spectrum(rotated), np.conj(spectrum(img)), atol=1e-10)


@pytest.mark.parametrize("box", [24, 25])
def test_rotated_image_is_the_render_at_half_turn_pose(box):
    """rotate_half_turn(render(A, o)) = render(Rz(π)·A, −o), with a CTF (even in k) too."""
    fm = fourier_map(torch.from_numpy(asymmetric_map(box)))
    A = torch.from_numpy(random_rotations(4, np.random.default_rng(0)))
    o = torch.tensor([[2.0, -3.0], [0.0, 0.0], [-4.5, 1.5], [3.3, 3.3]], dtype=torch.float64)
    ctf_params = CTFParams.full(4, defocus_u_A=12000.0, defocus_v_A=10000.0, defocus_angle_deg=35.0, voltage_kV=300.0,
                                cs_mm=2.7, amp_contrast=0.1, phase_shift_deg=0.0, bfactor_A2=0.0).to_torch(torch.float64)
    apix = 2.0
    for params in (None, ctf_params):
        original = render_images(fm, A, box, apix, params, o)
        turned = render_images(fm, HALF_TURN.double() @ A, box, apix, params, -o)
        scale = original.abs().max()
        torch.testing.assert_close(rotate_half_turn(original), turned, rtol=0, atol=2e-3 * float(scale))
        # the map is not symmetric, so this is not trivially true
        assert (rotate_half_turn(original) - original).abs().max() > 0.2 * scale


def test_symmetric_loss_keeps_the_smaller_error():
    """Per image min(err, err_rotated), averaged; the flag is True exactly where the rotated copy is strictly better."""
    err = torch.tensor([1.0, 5.0, 3.0, 0.5])
    err_rot = torch.tensor([2.0, 4.0, 3.0, 0.1])
    loss, rotated_won = symmetric_loss(err, err_rot)
    assert float(loss) == pytest.approx((1.0 + 4.0 + 3.0 + 0.1) / 4)
    assert rotated_won.tolist() == [False, True, False, True]


def test_poses_from_winner_undoes_the_half_turn():
    """If the rotated copy has pose Rz(π)·A and origin −o, the winner's pose maps back to (A, o)."""
    A = torch.from_numpy(random_rotations(4, np.random.default_rng(1))).float()
    o = torch.tensor([[1.0, 2.0], [-3.0, 0.5], [0.0, -1.0], [4.0, 4.0]])
    wrong_A = torch.from_numpy(random_rotations(4, np.random.default_rng(2))).float()
    wrong_o = torch.randn(4, 2)
    won = torch.tensor([True, False, True, False])
    # the rotated path holds the truth where it won, the original path elsewhere
    rot_rotated = torch.where(won[:, None, None], HALF_TURN @ A, wrong_A)
    origin_rotated = torch.where(won[:, None], -o, wrong_o)
    rot_original = torch.where(won[:, None, None], wrong_A, A)
    origin_original = torch.where(won[:, None], wrong_o, o)
    rot, origin = poses_from_winner(rot_original, origin_original, rot_rotated, origin_rotated, won)
    torch.testing.assert_close(rot, A)
    torch.testing.assert_close(origin, o)
