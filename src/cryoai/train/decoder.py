"""The decoder the training loss and the pose prediction share: each image and its π-rotated copy
go through the encoder, the volume renders both poses through the image formation model
(``physics``), and the path with the smaller error wins (as the symmetric loss does), its π
rotation undone."""

from __future__ import annotations

import torch

from cryoai.geometry.grids import half_plane_disc
from cryoai.losses import poses_from_winner, rotate_half_turn, squared_error
from cryoai.physics.image_model import render_spectra


def loss_frequencies(box: int, radius: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices into (box, box) centred spectra and their (M, 2) frequencies in cycles/px."""
    idx = half_plane_disc(box, radius, device)
    f = torch.arange(box, device=device) - box // 2
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    freqs = torch.stack([fx.flatten(), fy.flatten()], -1)[idx].to(torch.float32) / box
    return idx, freqs


def encode_both(encoder, volume, batch, idx, freqs, apix: float, symmetric: bool, device):
    """Encoder poses for a batch (and its π-rotated copy), the decoder's errors, and the winner.

    Returns (rotations, origins_px, err_original, err_rotated, rot_both, origin_both, won).
    """
    images = batch.images.to(device)
    if symmetric:
        images = torch.cat([images, rotate_half_turn(images)])
    rot, origin = encoder(images)
    target = batch.spectra.to(device).reshape(len(batch.indices), -1)[:, idx]
    c = batch.to(device).model_filter(freqs, apix)  # CTF × whitening (the spectra are whitened)
    if symmetric:
        target = torch.cat([target, target.conj()])
        c = torch.cat([c, c]) if c is not None else None
    err = squared_error(render_spectra(volume, rot, freqs, c, origin), target)
    if not symmetric:
        return rot, origin, err, None, rot, origin, torch.zeros_like(err, dtype=torch.bool)
    e1, e2 = err.chunk(2)
    r1, r2 = rot.chunk(2)
    o1, o2 = origin.chunk(2)
    won = e2 < e1
    r, o = poses_from_winner(r1, o1, r2, o2, won)
    return r, o, e1, e2, rot, origin, won
