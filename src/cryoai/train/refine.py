"""Local pose refinement: polish the encoder's poses by a small search around each one.

Semi-amortised (as cryoSPIN): the encoder does the global part; each image then tries 27 small
rotations (rotation vectors in {−δ, 0, δ}³) and 9 small shifts around its current pose against
the decoder, keeping the best, with δ shrinking over rounds. The cost per image is fixed (a few
hundred slices), independent of the data-set size, and no global search is made.
"""

from __future__ import annotations

import itertools

import roma
import torch

from cryoai.physics.shifts import origin_phase
from cryoai.physics.slicing import slice_coordinates

ROUNDS = ((6.0, 0.75), (3.0, 0.35), (1.5, 0.2))  # (rotation step in degrees, shift step in px)


def _offsets(dim: int, device) -> torch.Tensor:
    """All 3^dim points of {−1, 0, 1}^dim."""
    return torch.tensor(list(itertools.product((-1.0, 0.0, 1.0), repeat=dim)), device=device)


@torch.no_grad()
def refine_poses(volume, rotations: torch.Tensor, origins_px: torch.Tensor, target: torch.Tensor,
                 ctf_values: torch.Tensor | None, freqs: torch.Tensor, rounds=ROUNDS) -> tuple[torch.Tensor, torch.Tensor]:
    """Refined (rotations (B, 3, 3), origins (B, 2) px) minimising |target − CTF·shift·slice|².

    target (B, M) complex spectra at freqs (M, 2) cycles/px; ctf_values (B, M) or None.
    """
    b = len(rotations)
    c = ctf_values if ctf_values is not None else torch.ones(target.shape, device=target.device)
    rot, origin = rotations.clone(), origins_px.clone()
    steps, shift_steps = _offsets(3, target.device), _offsets(2, target.device)  # (27, 3), (9, 2)
    for angle_deg, shift_px in rounds:
        # rotations: 27 candidates Δ·A around each pose, at the current shift
        delta = roma.rotvec_to_rotmat(steps * torch.deg2rad(torch.tensor(angle_deg)))  # (27, 3, 3)
        cand = delta[None] @ rot[:, None]  # (B, 27, 3, 3)
        slices = volume(slice_coordinates(cand.reshape(-1, 3, 3), freqs)).reshape(b, 27, -1)
        model = slices * (c * origin_phase(freqs, origin))[:, None]
        best = (model - target[:, None]).abs().pow(2).sum(-1).argmin(1)
        rot = cand[torch.arange(b), best]
        # shifts: 9 candidates around the current origin, at the chosen rotation
        slice_best = volume(slice_coordinates(rot, freqs)) * c  # (B, M)
        shift_cand = origin[:, None] + shift_px * shift_steps[None]  # (B, 9, 2)
        phases = origin_phase(freqs, shift_cand.reshape(-1, 2)).reshape(b, 9, -1)
        best = (slice_best[:, None] * phases - target[:, None]).abs().pow(2).sum(-1).argmin(1)
        origin = shift_cand[torch.arange(b), best]
    return rot, origin
