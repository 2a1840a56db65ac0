"""The run directory a cryo-EM user recognises: config.yaml, log.txt, metrics.jsonl."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from cryoai import __version__
from cryoai.errors import InputError


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

    def log(self, message: str) -> None:
        if not self.active:
            return
        line = f"{datetime.now().strftime('%Y-%m-%d %H:%M:%S')}  {message}"
        self._log.write(line + "\n")
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def metrics(self, record: dict) -> None:
        if not self.active:
            return
        self._metrics.write(json.dumps(record) + "\n")

    def write_config(self, config: dict, extra: dict) -> None:
        if not self.active:
            return
        doc = {"cryoai_version": __version__, "command": " ".join(sys.argv),
               "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra, "config": config}
        with open(self.path / "config.yaml", "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)

    def close(self) -> None:
        if not self.active:
            return
        self._log.close()
        self._metrics.close()
