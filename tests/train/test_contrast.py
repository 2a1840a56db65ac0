"""Per-particle contrast scales (train/contrast.py): images of a simulated set multiplied by
known scales, with noise added after, give scales that follow the known ones (measured 0.94)."""

from __future__ import annotations

import mrcfile
import numpy as np
import torch

from cryoai.data.particles import load_particles
from cryoai.data.training_data import TrainingData
from cryoai.models.voxel import VoxelVolume
from cryoai.phantom import phantom_map
from cryoai.simulate import simulate
from cryoai.train.contrast import contrast_scales
from cryoai.train.finish import reconstruct
from helpers import correlation


def test_scales_follow_the_simulated_contrast(tmp_path, one_thread):
    simulate(phantom_map(16, 8.0), 8.0, 300, tmp_path, snr=1000.0, shift_std_A=4.0, seed=2, progress=False)
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.6, 1.4, 300)
    with mrcfile.mmap(tmp_path / "particles.mrcs", mode="r+") as f:
        clean = np.asarray(f.data)
        sigma = np.sqrt(clean.var(axis=(1, 2)).mean() / 0.5)  # SNR 0.5 for the typical particle
        f.data[:] = clean * truth[:, None, None].astype(np.float32) + sigma * rng.standard_normal(clean.shape).astype(np.float32)
    particles = load_particles(tmp_path / "particles.star")
    data = TrainingData(particles, 16, 16)
    rows = np.arange(300)
    rot = torch.from_numpy(particles.rotations).float()
    origin = torch.from_numpy(particles.origins_A / data.apix).float()
    volume = VoxelVolume(16, oversample=2)
    volume.load_spectrum(reconstruct(data, rows, rot, origin, volume.oversample))
    scales = contrast_scales(volume, data, rows, rot, origin)
    assert np.median(scales) == 1.0 and correlation(scales, truth) > 0.8, correlation(scales, truth)
