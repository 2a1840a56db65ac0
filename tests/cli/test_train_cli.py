"""Stopping and continuing a run: Ctrl-C, `--resume` with the run's settings, a busy OUT, a
truncated checkpoint, half sets stopped in half 2. Tiny runs (box 16, a few steps)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import cryoai
from helpers import tiny_config
from cryoai.cli.main import main as cli
from cryoai.data.particles import load_particles
from cryoai.errors import InputError
from cryoai.train.checkpoint import save_checkpoint
from cryoai.train.config import default_config
from cryoai.train.halves import train_halves
from cryoai.train.run_dir import RunDir, release_lock, take_lock
from cryoai.train.trainer import Trainer

STEPS = 100  # long enough that Ctrl-C lands inside training, after the first log line (step 25)

# `cryoai train` with the sizes a GPU run would choose (wider encoder, …), run on the CPU: what
# a GPU run leaves in OUT, for a resume on the CPU.
GPU_SIZED_TRAIN = """
import sys
import cryoai.train.config as config
cpu_default = config.default_config
config.default_config = lambda box, device, **kw: cpu_default(box, "cuda", **kw)
from cryoai.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def interrupted(tiny_set, tmp_path_factory):
    """A GPU-sized run started in a subprocess, a second `train` into its OUT while it runs,
    Ctrl-C, then `--resume` here on the CPU defaults: what each step returned."""
    star, out = str(tiny_set / "particles.star"), tmp_path_factory.mktemp("sigint") / "run"
    args = ["train", star, "-o", str(out), "--steps", str(STEPS), "--batch-size", "8", "--train-box", "64",
            "--workers", "0", "--no-warm-start", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(cryoai.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    first = subprocess.Popen([sys.executable, "-c", GPU_SIZED_TRAIN, *args], env=env, stderr=subprocess.PIPE, text=True)

    def wait_for(path: Path) -> None:
        deadline = time.time() + 180
        while not path.is_file() or not path.read_text().strip():
            assert first.poll() is None, first.stderr.read()
            assert time.time() < deadline, f"no {path} after 180 s"
            time.sleep(0.02)

    wait_for(out / ".lock")
    with contextlib.redirect_stderr(io.StringIO()) as busy_err:
        busy = cli(args)  # a second run into the same OUT, while the first holds it
    wait_for(out / "metrics.jsonl")  # the first log line: training has begun
    first.send_signal(signal.SIGINT)
    stderr = first.communicate(timeout=120)[1]
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    config_before = yaml.safe_load((out / "config.yaml").read_text())
    code = cli(["train", star, "-o", str(out), "--resume", "--quiet"])
    return {"out": out, "star": star, "first": first, "pid": first.pid, "busy": busy, "busy_err": busy_err.getvalue(),
            "stderr": stderr, "step": state["step"], "config_before": config_before, "resumed": code}


def test_second_train_into_busy_out_refuses(interrupted, capsys):
    """The second `train` exits 2 naming the process that holds OUT; the first ran on."""
    assert interrupted["busy"] == 2
    lines = interrupted["busy_err"].strip().splitlines()
    assert len(lines) == 1 and f"in use by another `cryoai train`: process {interrupted['pid']} on " in lines[0], lines
    assert interrupted["first"].returncode == 130  # not disturbed by the second


def test_sigint_saves_a_checkpoint_and_prints_one_line(interrupted):
    err = interrupted["stderr"]
    lines = err.strip().splitlines()
    step = interrupted["step"]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"interrupted at step {step}; continue with: cryoai train ")
    assert lines[0].endswith(f"-o {interrupted['out']} --resume")
    assert 25 <= step < STEPS
    assert not (interrupted["out"] / ".lock").exists()  # released at exit


def test_resume_after_sigint_finishes_the_run_with_its_settings(interrupted):
    """`--resume` (CPU defaults now, GPU sizes in the run) loads the checkpoint, trains to the
    run's step count and writes the outputs; config.yaml keeps the run's settings (train box
    fitted to the images) and records the resume."""
    out = interrupted["out"]
    assert interrupted["resumed"] == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == STEPS and steps == sorted(steps)
    log = (out / "log.txt").read_text()
    assert f"resumed from step {interrupted['step']}" in log
    assert (out / "volume.mrc").is_file() and (out / "report.html").is_file() and not (out / ".lock").exists()
    before, after = interrupted["config_before"], yaml.safe_load((out / "config.yaml").read_text())
    assert before["config"]["train_box"] == 16 and before["config"]["encoder_widths"] == [32, 64, 128, 256]
    assert after["config"] == before["config"] and after["started"] == before["started"]
    assert len(after["resumed"]) == 1 and after["resumed"][0]["device"] == "cpu"


@pytest.mark.parametrize("option", [["--train-box", "8"], ["--seed", "3"], ["--batch-size", "16"], ["--steps", "9"],
                                    ["--epochs", "50"], ["--volume", "fouriernet"], ["--halves"]])
def test_resume_with_another_setting_is_one_line(interrupted, capsys, option):
    """Options that would change what the checkpoint holds or the data order are refused, in one
    line naming the option, before anything is written."""
    out = interrupted["out"]
    capsys.readouterr()
    log, config = (out / "log.txt").read_text(), (out / "config.yaml").read_text()
    assert cli(["train", interrupted["star"], "-o", str(out), "--resume", "--quiet", *option]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {option[0]}") and "another -o" in line
    assert (out / "log.txt").read_text() == log and (out / "config.yaml").read_text() == config


def test_resume_with_truncated_checkpoint_is_one_line(interrupted, tmp_path, capsys):
    """One line naming the checkpoint; config.yaml untouched and OUT unlocked afterwards."""
    out = tmp_path / "run"
    shutil.copytree(interrupted["out"], out)
    ckpt = out / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    config = (out / "config.yaml").read_text()
    capsys.readouterr()
    assert cli(["train", interrupted["star"], "-o", str(out), "--resume", "--quiet"]) == 2
    line = one_error_line(capsys)
    assert "last.pt" in line and "unreadable checkpoint" in line
    assert (out / "config.yaml").read_text() == config and not (out / ".lock").exists()


def test_trainer_refuses_a_checkpoint_of_other_settings(tiny_set, tmp_path):
    """The Trainer itself refuses, in one line, to load a checkpoint trained at another size."""
    particles = load_particles(tiny_set / "particles.star")
    trainer = Trainer(particles, tiny_config(steps=3), RunDir(tmp_path / "r", quiet=True), progress=False)
    trainer.t_start = time.time()
    save_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt", trainer._state())
    with pytest.raises(InputError, match=r"last\.pt: the checkpoint was trained with train_box 16.*not train_box 8"):
        Trainer(particles, tiny_config(steps=3, train_box=8, encoder_box=8), RunDir(tmp_path / "r", quiet=True),
                resume=True, progress=False)


class Crash(Exception):
    pass


def test_halves_resume_after_a_crash_in_half_2_before_its_checkpoint(tiny_set, tmp_path, monkeypatch):
    """Half 1 finished, half 2 stopped before its first checkpoint: `--resume` keeps half 1 and
    trains half 2 from the start."""
    particles = load_particles(tiny_set / "particles.star")
    cfg = tiny_config(steps=3, checkpoint_every=100, volume_every=100, warm_start=False)
    step_once = Trainer.train_step

    def crash_in_half_2(self, step):
        if self.run.path.name == "half2":
            raise Crash
        return step_once(self, step)

    monkeypatch.setattr(Trainer, "train_step", crash_in_half_2)
    run = RunDir(tmp_path / "h", quiet=True)
    with pytest.raises(Crash):
        train_halves(particles, cfg, run, "cpu", resume=False, progress=False)
    assert not (tmp_path / "h" / "half2" / "checkpoints" / "last.pt").exists()
    half1 = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "h" / "half1").iterdir() if p.is_file()}
    monkeypatch.setattr(Trainer, "train_step", step_once)
    result = train_halves(particles, cfg, run, "cpu", resume=True, progress=False)
    run.close()
    assert np.isfinite(result["res_0.143_A"])
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "h" / "half1").iterdir() if p.is_file()} == half1
    assert "half 1: finished before" in (tmp_path / "h" / "log.txt").read_text()
    assert len(load_particles(tmp_path / "h" / "particles.star")) == 120


def test_lock_refuses_a_live_run_and_takes_over_a_stale_one(tmp_path):
    """OUT/.lock of a running process refuses; of a finished one is taken over (and said so);
    of another host refuses (it cannot be checked); release removes only our own."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        lock = tmp_path / ".lock"
        host = socket.gethostname()
        lock.write_text(f"{live.pid} {host} 2026-01-01T00:00:00+00:00\n")
        with pytest.raises(InputError, match=rf"in use by another `cryoai train`: process {live.pid} on {host}"):
            take_lock(tmp_path)
        lock.write_text(f"{live.pid} elsewhere 2026-01-01T00:00:00+00:00\n")
        with pytest.raises(InputError, match="on elsewhere"):
            take_lock(tmp_path)
        lock.write_text(f"{gone.pid} {host} 2026-01-01T00:00:00+00:00\n")
        note = take_lock(tmp_path)
        assert f"process {gone.pid}" in note and "no longer running" in note
        assert lock.read_text().split()[:2] == [str(os.getpid()), host]
        release_lock(tmp_path)
        assert not lock.exists()
        assert take_lock(tmp_path) is None
        lock.write_text(f"{live.pid} {host} 2026-01-01T00:00:00+00:00\n")
        release_lock(tmp_path)  # not ours: kept
        assert lock.exists()
    finally:
        live.kill()
        live.wait()


def test_config_boxes_fit_the_images():
    """An explicit --train-box larger than the images is fitted to them before config.yaml is
    written (the log and the report's Nyquist use it)."""
    cfg = default_config(16, "cpu", train_box=64, encoder_box=64)
    assert (cfg.train_box, cfg.encoder_box) == (16, 16)


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_it(tiny_set, tmp_path, monkeypatch):
    """A run stopped before its first checkpoint (what Ctrl-C in the warm start leaves) is
    started from step 0 by `--resume`, with the settings in its config.yaml."""
    star, out = str(tiny_set / "particles.star"), tmp_path / "run"
    step_once = Trainer.train_step

    def crash(self, step):
        raise Crash

    monkeypatch.setattr(Trainer, "train_step", crash)
    with pytest.raises(Crash):
        cli(["train", star, "-o", str(out), "--steps", "2", "--batch-size", "8", "--no-warm-start", "--quiet"])
    assert (out / "config.yaml").is_file() and not (out / "checkpoints" / "last.pt").exists()
    assert not (out / ".lock").exists()  # released on the error too
    monkeypatch.setattr(Trainer, "train_step", step_once)
    assert cli(["train", star, "-o", str(out), "--resume", "--quiet"]) == 0
    assert "no checkpoint yet" in (out / "log.txt").read_text()
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 2


@pytest.mark.parametrize("options,past", [(["--max-minutes", "60"], True), (["--max-minutes", "60", "--steps", "900"], False),
                                          (["--max-minutes", "60", "--epochs", "2"], False), ([], False)])
def test_a_time_limit_without_a_step_count_trains_while_it_improves(options, past):
    """`--max-minutes` alone: the steps are the schedule's length, not a stop (train_past_steps);
    with --steps or --epochs, or without a limit, the step count stops training."""
    import argparse

    from cryoai.cli.train import add_args, apply_options

    parser = argparse.ArgumentParser()
    add_args(parser)
    args = parser.parse_args(["p.star", "-o", "out", *options])
    assert apply_options(default_config(64, "cpu"), args, 1000, 64).train_past_steps is past
