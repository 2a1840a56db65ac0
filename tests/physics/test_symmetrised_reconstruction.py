"""Reconstruction with point-group symmetry: the sums symmetrised over the group equal the sums
of every image inserted at all its equivalent poses, and a symmetric map projects identically
at equivalent poses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import correlation, symmetric_phantom

from cryoai.geometry.grids import freq_grid_2d, ifft3_centered
from cryoai.geometry.rotations import random_rotations
from cryoai.geometry.symmetry import point_group, to_asymmetric_unit
from cryoai.physics.backprojection import backproject, reconstruct_in_box, symmetrise_sums
from cryoai.physics.image_model import render_images, render_spectra
from cryoai.physics.slicing import fourier_map


def _crop(spectrum: torch.Tensor, box: int) -> np.ndarray:
    rec = ifft3_centered(spectrum).numpy()
    s = rec.shape[0] // 2 - box // 2
    return rec[s : s + box, s : s + box, s : s + box]


@pytest.mark.parametrize("symbol", ["C4", "D3"])
def test_symmetrised_sums_equal_insertion_at_every_equivalent_pose(symbol):
    box, n = 24, 60
    vol = symmetric_phantom(box, symbol, seed=6)
    fm = fourier_map(torch.from_numpy(vol))
    ops = torch.from_numpy(point_group(symbol))
    A = torch.from_numpy(to_asymmetric_unit(random_rotations(n, np.random.default_rng(3)), symbol))
    freqs = freq_grid_2d(box).reshape(-1, 2)
    spectra = render_spectra(fm, A.float(), freqs)
    sym = symmetrise_sums(*backproject(spectra, A, freqs, box, oversample=2), ops)
    expanded_poses = (A[:, None] @ ops.transpose(1, 2)[None]).reshape(-1, 3, 3)
    expanded = backproject(spectra.repeat_interleave(len(ops), 0), expanded_poses, freqs, box, oversample=2)
    plain = backproject(spectra, A, freqs, box, oversample=2)
    shell = torch.linalg.vector_norm(torch.stack(torch.meshgrid(*[torch.arange(2 * box) - box] * 3, indexing="ij")).float(), dim=0)
    inner = shell < 0.8 * box  # within Nyquist of the images
    np.testing.assert_allclose(sym[1][inner].sum(), expanded[1][inner].sum(), rtol=0.02)
    maps = [_crop(reconstruct_in_box(*sums, box, 0.01), box) for sums in (sym, expanded, plain)]
    assert correlation(maps[0], maps[1]) > 0.99
    assert correlation(maps[0], vol) > correlation(maps[2], vol)  # the group adds views
    assert correlation(maps[0], vol) > 0.95


def test_symmetric_map_projects_identically_at_equivalent_poses():
    box = 32
    vol = symmetric_phantom(box, "O", seed=2)
    fm = fourier_map(torch.from_numpy(vol))
    A = torch.from_numpy(random_rotations(2, np.random.default_rng(1)))
    ops = torch.from_numpy(point_group("O"))
    ref = render_images(fm, A, box, 1.0).numpy()
    for S in ops[1:]:
        same = render_images(fm, A @ S.T, box, 1.0).numpy()
        assert np.abs(same - ref).max() < 0.03 * np.abs(ref).max()
    turned = render_images(fm, ops[5] @ A, box, 1.0).numpy()  # an in-plane turn of the image instead
    assert np.abs(turned - ref).max() > 0.2 * np.abs(ref).max()
