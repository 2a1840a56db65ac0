"""Full-state checkpoints: models, optimisers, step, RNG, written atomically; and Ctrl-C
(SIGINT) deferred to the end of a training step, so the checkpoint then saved is consistent."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from cryoai.errors import InputError
from cryoai.io.atomic import atomic_path

REQUIRED = ("step", "encoder", "volume", "opt_encoder", "opt_volume", "config", "torch_rng")


class Interrupted(KeyboardInterrupt):
    """Training stopped by SIGINT at the end of step ``step``, after saving a checkpoint of it."""

    def __init__(self, step: int):
        super().__init__(f"interrupted at step {step}")
        self.step = step


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """torch.save to a temporary file, then rename: a kill -9 leaves the old checkpoint intact."""
    state = dict(state, torch_rng=torch.get_rng_state())
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, cfg=None) -> dict:
    """The state saved at ``path`` (on the CPU, whatever device wrote it); restores torch's RNG.

    With ``cfg`` (a TrainConfig), a checkpoint trained with other settings (other than
    ``config.RESUMABLE_FIELDS``) is refused in one line instead of failing to load.
    """
    from cryoai.train.config import changed_fields

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint to resume from; start without --resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise InputError(f"{path}: unreadable checkpoint (truncated or not a cryoai checkpoint: {type(e).__name__}); "
                         "restore it from a copy, or start a new run in another -o") from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED):
        raise InputError(f"{path}: not a cryoai training checkpoint; "
                         "restore it from a copy, or start a new run in another -o")
    if cfg is not None:
        changed = changed_fields(state["config"], cfg)
        if changed:
            was = ", ".join(f"{k} {state['config'][k]}" for k in changed)
            now = ", ".join(f"{k} {getattr(cfg, k)}" for k in changed)
            raise InputError(f"{path}: the checkpoint was trained with {was}, not {now}; resume with the run's "
                             "settings (its config.yaml), or start a new run in another -o")
    torch.set_rng_state(state["torch_rng"])
    return state


@contextmanager
def sigint_at_step_end(enabled: bool = True) -> Iterator[Callable[[], bool]]:
    """Within the block a first Ctrl-C (SIGINT) only sets a flag, read by calling the yielded
    function, so a training loop can stop at the end of a step; a second one interrupts at once.

    Outside the main thread, or with ``enabled`` False (under torchrun, where ranks would see
    the signal at different steps), SIGINT is left alone and the flag stays False.
    """
    requested = threading.Event()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return

    def handler(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
