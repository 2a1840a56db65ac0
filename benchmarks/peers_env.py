"""The child processes of benchmarks/peers.py: each peer's virtual environment (created once from
PyPI), the one-thread environment every child runs in, and running a command under a time limit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1"}
# pip commands per environment, in order (torch first so that pip takes the CPU build)
VENVS = {
    "cryodrgn": [["torch==2.13.0"], ["torch==2.13.0", "cryodrgn>=4,<5"]],
    "aspire": [["aspire"]],
}
VERSION_PACKAGES = {"cryodrgn": ["cryodrgn", "torch", "numpy"], "aspire": ["aspire", "numpy", "finufft"]}


def run_env() -> dict[str, str]:
    """The environment for every child process: one thread, cryoai importable."""
    env = dict(os.environ, **ONE_THREAD)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def ensure_venv(name: str, home: Path) -> Path:
    """Create (once) the virtual environment `home/name` with the peer installed; → its bin folder."""
    venv = home / name
    bindir = venv / "bin"
    marker = venv / ".installed"
    if not marker.is_file():
        print(f"[peers] creating {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        for pkgs in VENVS[name]:
            subprocess.run([str(bindir / "python"), "-m", "pip", "install", "-q", *pkgs], check=True, env=run_env())
        marker.write_text(datetime.now().isoformat())
    return bindir


def package_versions(bindir: Path, names: list[str]) -> dict[str, str]:
    """Installed versions of `names` in the environment `bindir`."""
    code = ("import importlib.metadata as m, json, sys; "
            "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")
    out = subprocess.run([str(bindir / "python"), "-c", code, *names], check=True, text=True, capture_output=True)
    return json.loads(out.stdout)


def run_limited(cmd: list[str], log: Path, limit_s: float, cwd: Path | None = None) -> tuple[float, bool, int]:
    """Run `cmd` (stdout+stderr → log) for at most `limit_s` seconds → (wall s, finished, return code).

    The command runs in its own process group, which is stopped (SIGTERM, then SIGKILL) at the limit.
    """
    print(f"[peers] $ {' '.join(cmd)}  (limit {limit_s / 60:.0f} min, log {log})", flush=True)
    t0 = time.time()
    with open(log, "w") as f:
        f.write(f"# {datetime.now().isoformat()} $ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=run_env(), start_new_session=True)
        try:
            rc = proc.wait(timeout=limit_s)
            finished = rc == 0
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc, finished = -1, False
    return time.time() - t0, finished, rc
