"""Local pose refinement: polish the encoder's poses by a small search around each one.

Semi-amortised (as cryoSPIN): the encoder does the global part; each image then tries 27 small
rotations (rotation vectors in {−δ, 0, δ}³) and 9 small shifts around its current pose against
the decoder, keeping the best, with δ shrinking over rounds. The cost per image is fixed (a few
hundred slices), independent of the data-set size, and no global search is made.

Before the local rounds, each pose also competes with its mirror hypotheses: M·A for M a half
turn about an in-plane axis (the view from the opposite side, whose projection is the mirror
image). A projection that is nearly mirror-symmetric is explained almost as well by the mirror
pose, and that is the encoder's commonest gross error (most images > 20° off in a converged run
were off by 150–180° about an in-plane axis); it lies beyond any local step.
"""

from __future__ import annotations

import itertools
import math

import roma
import torch

from cryoai.physics.image_model import modulate
from cryoai.physics.slicing import project

ROUNDS = ((6.0, 0.75), (3.0, 0.35), (1.5, 0.2), (0.75, 0.1))  # (rotation step in degrees, shift step in px)
N_MIRRORS = 32  # in-plane axes of the mirror hypotheses, 180°/32 = 5.6° apart


def mirror_rotations(n: int = N_MIRRORS, device=None) -> torch.Tensor:
    """(n, 3, 3) half turns about in-plane axes at angles πj/n (j = 0 … n−1): Rz(2πj/n)·Rx(π)."""
    alpha = torch.arange(n, device=device, dtype=torch.float32) * (2 * math.pi / n)
    cos, sin = torch.cos(alpha), torch.sin(alpha)
    out = torch.zeros(n, 3, 3, device=device)
    out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1], out[:, 2, 2] = cos, sin, sin, -cos, -1.0
    return out


def _offsets(dim: int, device) -> torch.Tensor:
    """All 3^dim points of {−1, 0, 1}^dim."""
    return torch.tensor(list(itertools.product((-1.0, 0.0, 1.0), repeat=dim)), device=device)


def _closest(model: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per image, the index of the candidate model spectrum (B, J, M) closest to target (B, M)."""
    return (model - target[:, None]).abs().pow(2).sum(-1).argmin(1)


def _best_rotations(volume, cand: torch.Tensor, origins_px: torch.Tensor, target: torch.Tensor,
                    ctf_values: torch.Tensor | None, freqs: torch.Tensor) -> torch.Tensor:
    """Per image, the candidate rotation (cand (B, J, 3, 3)) whose image at the image's origin
    (B, 2) is closest to ``target`` (B, M): (B, 3, 3)."""
    b, j = cand.shape[:2]
    slices = project(volume, cand.reshape(-1, 3, 3), freqs).reshape(b, j, -1)
    c = None if ctf_values is None else ctf_values[:, None]
    best = _closest(modulate(slices, freqs, c, origins_px[:, None]), target)
    return cand[torch.arange(b), best]


def _best_origins(volume, rotations: torch.Tensor, cand: torch.Tensor, target: torch.Tensor,
                  ctf_values: torch.Tensor | None, freqs: torch.Tensor) -> torch.Tensor:
    """Per image, the candidate origin (cand (B, S, 2) px) whose image at the rotation (B, 3, 3)
    is closest to ``target`` (B, M): (B, 2)."""
    slices = project(volume, rotations, freqs)[:, None]  # one slice per image, under S shifts
    c = None if ctf_values is None else ctf_values[:, None]
    best = _closest(modulate(slices, freqs, c, cand), target)
    return cand[torch.arange(len(cand)), best]


@torch.no_grad()
def refine_poses(volume, rotations: torch.Tensor, origins_px: torch.Tensor, target: torch.Tensor,
                 ctf_values: torch.Tensor | None, freqs: torch.Tensor, rounds=ROUNDS,
                 mirrors: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Refined (rotations (B, 3, 3), origins (B, 2) px) minimising |target − CTF·shift·slice|²
    (the image model, ``physics.image_model.modulate`` of ``physics.slicing.project``).

    target (B, M) complex spectra at freqs (M, 2) cycles/px; ctf_values (B, M) or None;
    ``mirrors``: let each pose compete with its mirror hypotheses first.
    """
    rot, origin = rotations.clone(), origins_px.clone()
    if mirrors:
        flips = mirror_rotations(device=target.device)
        cand = torch.cat([rot[:, None], flips[None] @ rot[:, None]], 1)  # (B, 1 + n, 3, 3)
        rot = _best_rotations(volume, cand, origin, target, ctf_values, freqs)
    steps, shift_steps = _offsets(3, target.device), _offsets(2, target.device)  # (27, 3), (9, 2)
    for angle_deg, shift_px in rounds:
        # rotations: 27 candidates Δ·A around each pose, at the current shift
        delta = roma.rotvec_to_rotmat(steps * torch.deg2rad(torch.tensor(angle_deg)))  # (27, 3, 3)
        rot = _best_rotations(volume, delta[None] @ rot[:, None], origin, target, ctf_values, freqs)
        # shifts: 9 candidates around the current origin, at the chosen rotation
        origin = _best_origins(volume, rot, origin[:, None] + shift_px * shift_steps[None], target, ctf_values, freqs)
    return rot, origin
