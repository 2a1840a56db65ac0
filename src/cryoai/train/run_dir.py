"""The run directory a cryo-EM user recognises: config.yaml, log.txt, metrics.jsonl; and
OUT/.lock, which keeps a second `cryoai train` out of a folder a run is using."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from cryoai import __version__
from cryoai.errors import InputError
from cryoai.io.atomic import atomic_path

LOCK = ".lock"


class RunDir:
    """Creates OUT/, appends to OUT/log.txt (flushed every line) and OUT/metrics.jsonl.

    Inactive (``active=False``; by default on every torchrun rank but 0) it writes nothing:
    log, metrics, config and close do nothing, so one rank alone keeps the run directory.
    """

    def __init__(self, path: str, quiet: bool = False, active: bool | None = None):
        from cryoai.train.distributed import is_main

        self.path = Path(path)
        self.quiet = quiet
        self.start = time.time()
        self.active = is_main() if active is None else active
        if not self.active:
            return
        try:
            (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
            (self.path / "volumes").mkdir(exist_ok=True)
            self._log = open(self.path / "log.txt", "a", buffering=1)
            self._metrics = open(self.path / "metrics.jsonl", "a", buffering=1)
        except OSError as e:
            raise InputError(f"cannot write to output folder {self.path}: {e.strerror}; choose a writable -o") from None

    def log(self, message: str, always_print: bool = False) -> None:
        """Append to log.txt; also print on stderr unless quiet (``always_print``: even then)."""
        if not self.active:
            return
        line = f"{datetime.now().strftime('%Y-%m-%d %H:%M:%S')}  {message}"
        self._log.write(line + "\n")
        if always_print or not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def metrics(self, record: dict) -> None:
        if not self.active:
            return
        self._metrics.write(json.dumps(record) + "\n")

    def write_config(self, config: dict, extra: dict) -> None:
        """config.yaml of a new run: what it was started with (``config``: the resolved TrainConfig)."""
        if not self.active:
            return
        doc = {"cryoai_version": __version__, "command": " ".join(sys.argv),
               "started": _now(), **extra, "config": config}
        self._write_yaml(doc)

    def record_resume(self, extra: dict) -> None:
        """Append a ``resumed`` entry (when, the command, ``extra``) to config.yaml; the rest is kept."""
        if not self.active:
            return
        doc = read_run_config(self.path)
        doc.setdefault("resumed", []).append({"at": _now(), "command": " ".join(sys.argv), **extra})
        self._write_yaml(doc)

    def _write_yaml(self, doc: dict) -> None:
        with atomic_path(self.path / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(doc, sort_keys=False))

    def close(self) -> None:
        if not self.active:
            return
        self._log.close()
        self._metrics.close()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_run_config(path: str | os.PathLike) -> dict:
    """OUT/config.yaml of an earlier run (InputError when there is none or it is unreadable)."""
    cfg_path = Path(path) / "config.yaml"
    if not cfg_path.is_file():
        raise InputError(f"{path}: no run to resume (no config.yaml, no checkpoints/last.pt); start without --resume")
    try:
        doc = yaml.safe_load(cfg_path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InputError(f"{cfg_path}: not readable YAML ({type(e).__name__}); restore it, or start a new run in another -o") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise InputError(f"{cfg_path}: not a cryoai run configuration; restore it, or start a new run in another -o")
    return doc


def take_lock(path: str | os.PathLike) -> str | None:
    """Create OUT/.lock holding this process's id, host and start time.

    A lock held by a running process (or by one on another host, which cannot be checked)
    raises InputError naming it; a lock whose process is gone is taken over, and the note
    returned says so (for the log). ``release_lock`` removes it.
    """
    folder = Path(path)
    lock = folder / LOCK
    note = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, host, since = _holder(lock)
                if pid is None or host != socket.gethostname() or _running(pid):
                    who = f"process {pid} on {host} (since {since})" if pid is not None else "a run starting just now"
                    raise InputError(f"{folder} is in use by another `cryoai train`: {who}; wait for it or stop it, "
                                     f"choose another -o, or delete {lock} if no run uses it") from None
                note = f"took over {lock}: its process {pid} on {host} (since {since}) is no longer running"
                lock.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {socket.gethostname()} {_now()}\n")
            return note
    except OSError as e:
        raise InputError(f"cannot write to output folder {folder}: {e.strerror}; choose a writable -o") from None
    raise InputError(f"{lock}: taken by another run while this one started; choose another -o")


def release_lock(path: str | os.PathLike) -> None:
    """Remove OUT/.lock if this process holds it."""
    lock = Path(path) / LOCK
    pid, host, _ = _holder(lock)
    if pid == os.getpid() and host == socket.gethostname():
        lock.unlink(missing_ok=True)


def _holder(lock: Path) -> tuple[int | None, str | None, str | None]:
    """(pid, host, start time) written in a lock file; Nones when absent, empty or foreign."""
    try:
        pid, host, since = lock.read_text().split()[:3]
        return int(pid), host, since
    except (OSError, ValueError):
        return None, None, None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
