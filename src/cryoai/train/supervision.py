"""Pose supervision of the encoder: the pose loss, and the synthetic images it is computed on.

Two sources of known poses teach the encoder before (and while) the symmetric loss takes over:
the warm-start subset's poses, and images rendered from the current volume at random known
poses (``synthetic_batch``). Both are scored by the one ``pose_loss``; under a point group
(``train --symmetry``) modulo the group: a symmetric map gives the same image at A* and at every
A*·Sᵀ (``cryoai.eval.poses``), so the encoder is asked for the nearest of them.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cryoai.geometry.grids import freq_grid_2d, ifft2_centered
from cryoai.geometry.rotations import random_rotations
from cryoai.losses import HALF_TURN
from cryoai.physics.image_model import Volume, render_spectra
from cryoai.physics.noise import white_noise_spectra
from cryoai.train import distributed as dist
from cryoai.data.training_data import TrainingData, crop_spectra

ORIGIN_WEIGHT = 0.1  # per px² of origin error, against |ΔR|²_F ∈ [0, 8]


def pose_loss(rotations: torch.Tensor, origins_px: torch.Tensor, rotations_true: torch.Tensor,
              origins_true_px: torch.Tensor, operators: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image |R − R*|²_F + 0.1·|o − o*|² (rotations (B, 3, 3), origins (B, 2) in pixels).
    With point-group ``operators`` S (K, 3, 3), the rotation term is the least over R*·Sᵀ (the
    origins are the same at every equivalent pose); None: C1."""
    if operators is None:
        rotation_term = (rotations - rotations_true).pow(2).sum((1, 2))
    else:
        equivalents = rotations_true[:, None] @ operators.to(rotations_true).transpose(1, 2)[None]  # (B, K, 3, 3)
        rotation_term = (rotations[:, None] - equivalents).pow(2).sum((2, 3)).amin(1)
    return rotation_term + ORIGIN_WEIGHT * (origins_px - origins_true_px).pow(2).sum(1)


def subset_pose_loss(rot_both: torch.Tensor, origin_both: torch.Tensor, sel: torch.Tensor,
                     rotations_true: torch.Tensor, origins_true_px: torch.Tensor, symmetric: bool,
                     operators: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image ``pose_loss`` of the batch images ``sel`` against their warm-start poses
    (modulo the point group of ``operators``).

    ``rot_both``/``origin_both`` are the encoder's outputs for the batch (n images) and, under the
    symmetric loss, then for its π-rotated copy (``decoder.encode_both``): the copy's pose is the
    image's turned by HALF_TURN, with the origin negated, and is supervised too.
    """
    loss = pose_loss(rot_both[sel], origin_both[sel], rotations_true, origins_true_px, operators)
    if symmetric:
        n = len(rot_both) // 2
        half = HALF_TURN.to(rotations_true.device)
        loss = loss + pose_loss(rot_both[n + sel], origin_both[n + sel], half @ rotations_true, -origins_true_px, operators)
    return loss


def synthetic_batch(volume: Volume, data: TrainingData, n: int, origin_sd_px: float, seed: int, step: int,
                    device: str | torch.device = "cpu", noise_fraction: float = 1.0,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images rendered from ``volume`` at known random poses, with the data's CTFs and shifts and
    ``noise_fraction`` of its noise variance: unlimited labelled examples that teach the encoder
    the map's views.

    Rotations are uniform, origins normal with ``origin_sd_px`` (training-box pixels), CTFs those
    of random particles. The data's noise variance per coefficient is taken as what its power
    leaves beyond the rendered signal's (``TrainingData`` normalises the power to 1), at least
    0.05; white noise (``physics/noise.py``) of ``noise_fraction`` times that variance is added
    (1: the data's SNR; 0.5: twice it, ``TrainConfig.synthetic_noise``). The draw is a function of
    (seed, step) alone. Returns (encoder images, rotations, origins_px) on ``device``; under
    torchrun, this rank's strided share of the n drawn.
    """
    gen = np.random.default_rng([seed, step, 7])
    box = data.train_box
    rot = torch.from_numpy(random_rotations(n, gen)).to(torch.float32)
    origin = torch.from_numpy(gen.normal(0.0, origin_sd_px, (n, 2))).to(torch.float32)
    freqs = freq_grid_2d(box).reshape(-1, 2)
    c = None
    if data.particles.ctf is not None or data.noise is not None:  # CTF × whitening, as the data's
        rows = gen.integers(0, len(data.particles), n)
        c = data.model_filter(rows, freqs)
    mine = torch.from_numpy(dist.shard(np.arange(n)))
    rot, origin, c = rot[mine], origin[mine], None if c is None else c[mine]
    with torch.no_grad():
        spectra = render_spectra(volume, rot.to(device), freqs.to(device),
                                 None if c is None else c.to(device), origin.to(device))
    spectra = spectra.reshape(len(mine), box, box)
    signal = dist.mean_over_ranks(float(spectra.abs().pow(2).mean()), len(mine))
    noise_sd = math.sqrt(noise_fraction * max(1.0 - signal, 0.05))
    spectra = spectra + white_noise_spectra(n, box, noise_sd, gen)[mine].to(device)  # real noise: Hermitian
    images = ifft2_centered(crop_spectra(spectra, data.encoder_box)) * data.encoder_box
    return images, rot.to(device), origin.to(device)
