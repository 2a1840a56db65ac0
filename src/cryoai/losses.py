"""Reconstruction losses: the symmetric loss (cryoAI) and its plain-L2 ablation.

The symmetric loss compares each image and its copy rotated in-plane by π, each with its own
predicted pose, and keeps per image the smaller of the two errors (gradients flow through the
winner). A rotation by π about the image centre maps X̂(k) to X̂(−k) = conj X̂(k), the pose A to
Rz(π)·A and the origin o to −o.
"""

from __future__ import annotations

import torch

# Rz(π): the in-plane half turn (diag(−1, −1, 1)); it is its own inverse.
HALF_TURN = torch.diag(torch.tensor([-1.0, -1.0, 1.0]))


def rotate_half_turn(images: torch.Tensor) -> torch.Tensor:
    """Real images (..., L, L) rotated by π about the centre pixel L//2 (even L: index i → L − i mod L)."""
    flipped = torch.flip(images, dims=(-2, -1))
    if images.shape[-1] % 2 == 0:
        flipped = torch.roll(flipped, shifts=(1, 1), dims=(-2, -1))
    return flipped


def squared_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |pred − target|² per image over the compared frequencies: (B, M) → (B,)."""
    return (pred - target).abs().pow(2).mean(dim=-1)


def symmetric_loss(err_original: torch.Tensor, err_rotated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over images of min(error, error of the π-rotated copy); also returns which won
    (True where the rotated path won)."""
    rotated_won = err_rotated < err_original
    return torch.where(rotated_won, err_rotated, err_original).mean(), rotated_won


def poses_from_winner(rot_original, origin_original, rot_rotated, origin_rotated, rotated_won):
    """The pose of each image from the path that won, the π rotation undone:
    A = Rz(π)·A' and o = −o' for the rotated path."""
    half = HALF_TURN.to(rot_rotated)
    rot = torch.where(rotated_won[:, None, None], half @ rot_rotated, rot_original)
    origin = torch.where(rotated_won[:, None], -origin_rotated, origin_original)
    return rot, origin
