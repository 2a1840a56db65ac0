"""Full-state checkpoints: models, optimisers, step, RNG, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cryoai.errors import InputError
from cryoai.io.atomic import atomic_path


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """torch.save to a temporary file, then rename: a kill -9 leaves the old checkpoint intact."""
    state = dict(state, torch_rng=torch.get_rng_state())
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint to resume from; start without --resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise InputError(f"{path}: unreadable checkpoint ({e}); delete it and start again") from None
    torch.set_rng_state(state["torch_rng"])
    return state
