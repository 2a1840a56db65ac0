"""Several pose hypotheses per image, each refined locally, the best fitting one kept.

An image's projection is explained almost as well by a few poses far from each other: the pose
turned in-plane by a quarter or half turn (for a particle with a near-symmetric outline) and the
view from the opposite side (the mirror image, ``refine.mirror_rotations``). The encoder lands
on one of them; a local search cannot get from one to another. So each image starts from its
pose A and from Rz(90°k)·A (k = 1 … ``turns`` − 1, an in-plane turn of the image, the origin
kept), each through a first coarse round of ``refine.refine_poses`` (with its mirror
hypotheses); the start whose refined pose has the smallest residual goes on through the finer
rounds. The cost per image is fixed: about 1 + (turns − 1)·0.4 times that of ``refine_poses``
alone (each extra start costs the 33 mirror and 28 first-round slices, of the 145 a refinement
makes).
"""

from __future__ import annotations

import math

import torch

from cryoai.physics.image_model import render_spectra
from cryoai.train.refine import ROUNDS, refine_poses

TURNS = 4  # in-plane starts per image: 0°, 90°, 180°, 270°


def in_plane_turns(turns: int, device=None) -> torch.Tensor:
    """(turns, 3, 3) rotations about the viewing axis z by 360°·k/turns, k = 0 … turns − 1."""
    angle = torch.arange(turns, device=device, dtype=torch.float32) * (2 * math.pi / turns)
    out = torch.zeros(turns, 3, 3, device=device)
    out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1] = angle.cos(), -angle.sin(), angle.sin(), angle.cos()
    out[:, 2, 2] = 1.0
    return out


@torch.no_grad()
def pose_residuals(volume, rotations: torch.Tensor, origins_px: torch.Tensor, target: torch.Tensor,
                   ctf_values: torch.Tensor | None, freqs: torch.Tensor) -> torch.Tensor:
    """Σ_k |target − CTF·shift·slice|² per image (B,): the misfit of poses (B, 3, 3), origins
    (B, 2) px to spectra target (B, M) at freqs (M, 2) cycles/px (``render_spectra``)."""
    model = render_spectra(volume, rotations, freqs, ctf_values, origins_px)
    return (target - model).abs().pow(2).sum(-1)


@torch.no_grad()
def refine_hypotheses(volume, rotations: torch.Tensor, origins_px: torch.Tensor, target: torch.Tensor,
                      ctf_values: torch.Tensor | None, freqs: torch.Tensor,
                      turns: int = TURNS) -> tuple[torch.Tensor, torch.Tensor]:
    """``refine_poses`` from ``turns`` in-plane starts per image (module docstring): the refined
    (rotations (B, 3, 3), origins (B, 2) px) of the start that fits best. turns = 1 is plain
    ``refine_poses``."""
    if turns <= 1:
        return refine_poses(volume, rotations, origins_px, target, ctf_values, freqs)
    b = len(rotations)
    starts = (in_plane_turns(turns, target.device)[None] @ rotations[:, None]).transpose(0, 1).reshape(-1, 3, 3)
    repeat = lambda t: None if t is None else t.repeat(turns, *([1] * (t.dim() - 1)))  # noqa: E731
    rot, origin = refine_poses(volume, starts, repeat(origins_px), repeat(target), repeat(ctf_values), freqs,
                               rounds=ROUNDS[:1])
    misfit = pose_residuals(volume, rot, origin, repeat(target), repeat(ctf_values), freqs).reshape(turns, b)
    best = misfit.argmin(0) * b + torch.arange(b, device=target.device)
    return refine_poses(volume, rot[best], origin[best], target, ctf_values, freqs, rounds=ROUNDS[1:], mirrors=False)
