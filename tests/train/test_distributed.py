"""Data-parallel training and prediction: two CPU ranks (gloo) launched by torchrun.

Each ``torchrun`` call starts fresh interpreters (a few seconds of imports per rank). The CLI
runs go through ``tests/ddp_cli.py`` (``python -m cryoai`` that also fails when a rank's process
group outlives the command: gloo threads torn down at exit abort a rank now and then).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import cryoai
from cryoai.cli.main import main as cli
from cryoai.data.particles import load_particles

TESTS = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, ranks: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(cryoai.__file__).parents[1]), str(TESTS.parent),  # cryoai, helpers
                                           os.environ.get("PYTHONPATH", "")]))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as e:  # what the ranks printed before they were killed
        out = "".join(b.decode(errors="replace") if isinstance(b, bytes) else b for b in (e.stdout or "", e.stderr or ""))
        pytest.fail(f"torchrun timed out after 120 s:\n{out[-20000:]}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-20000:]
    return done


@pytest.fixture(scope="module")
def trained(tiny_set, tmp_path_factory):
    """tests/ddp_worker.py on two ranks: what each rank held, and rank 0's run directory."""
    out = tmp_path_factory.mktemp("ddp")
    torchrun(str(TESTS / "ddp_worker.py"), str(tiny_set / "particles.star"), str(out))
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    return ranks, out / "run"


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ranks_hold_identical_weights(trained):
    """After the warm start, after training and after ``finish`` both ranks hold the same
    encoder, volume and poses, and training changed the weights."""
    (r0, r1), run = trained
    for key in ("encoder_init", "volume_warm", "encoder_trained", "volume_trained", "volume_final"):
        assert same(r0[key], r1[key]), key
    assert np.array_equal(r0["rotations"], r1["rotations"]) and np.array_equal(r0["origins_A"], r1["origins_A"])
    assert not same(r0["encoder_init"], r0["encoder_trained"])
    assert not torch.allclose(r0["volume_warm"]["values"], r0["volume_trained"]["values"])
    # rank 0 alone wrote the run directory
    for name in ("volume.mrc", "particles.star", "log.txt", "metrics.jsonl", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    assert (run / "volumes" / "step_000003.mrc").is_file()


def test_sharded_predict_matches_one_process(trained, tiny_set, tmp_path):
    """`torchrun --nproc_per_node 2 -m cryoai predict` writes the poses a single process writes."""
    _, run = trained
    star = str(tiny_set / "particles.star")
    done = torchrun(str(TESTS / "ddp_cli.py"), "predict", str(run), star, "-o", str(tmp_path / "two.star"), "--quiet")
    assert "on 2 ranks" in done.stdout
    assert cli(["predict", str(run), star, "-o", str(tmp_path / "one.star"), "--quiet"]) == 0
    one = load_particles(tmp_path / "one.star", datadir=str(tiny_set))
    two = load_particles(tmp_path / "two.star", datadir=str(tiny_set))
    assert len(two) == 120
    assert np.allclose(one.rotations, two.rotations, atol=1e-3)
    assert np.allclose(one.origins_A, two.origins_A, atol=1e-2)


def test_cli_train_and_resume_on_two_ranks(tiny_set, tmp_path):
    """`torchrun -m cryoai train` writes one run directory (with `--classes 2 --keep auto`: the
    passes after the map run on both ranks to the end); `--resume` continues it on two ranks."""
    star, out = str(tiny_set / "particles.star"), tmp_path / "r"
    torchrun(str(TESTS / "ddp_cli.py"), "train", star, "-o", str(out), "--steps", "2", "--batch-size", "8",
             "--classes", "2", "--keep", "auto", "--quiet")
    assert (out / "report.html").is_file() and (out / "volume.mrc").is_file()
    assert (out / "volume_class1.mrc").is_file() and (out / "volume_class2.mrc").is_file()
    table = load_particles(out / "particles.star", datadir=str(tiny_set)).table
    assert set(table["rlnClassNumber"]) <= {0, 1, 2} and "rlnCtfScalefactor" in table
    log = (out / "log.txt").read_text()
    assert "× 2 ranks" in log and len(re.findall(r"images at box \d+ in", log)) == 1  # the warm start, logged by one rank
    torchrun(str(TESTS / "ddp_cli.py"), "train", star, "-o", str(out), "--quiet", "--resume")  # with the run's settings
    log = (out / "log.txt").read_text()
    assert "resumed from step 2" in log and "warm start" not in log.split("resumed from step 2")[1]
    assert len(load_particles(out / "particles.star", datadir=str(tiny_set))) == 120


def test_init_on_cuda_under_torchrun_reaches_the_process_group(monkeypatch):
    """Launched by torchrun on CUDA, ``init`` selects the rank's GPU, then joins the group. (An
    `import torch.distributed.nn` inside it made `torch` a local name, so the GPU selection
    before it raised UnboundLocalError: every multi-GPU run failed at start.)"""
    import torch

    from cryoai.train import distributed

    chosen = []

    class Joined(Exception):
        pass

    def join(*args, **kwargs):
        raise Joined

    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed, "launched", lambda: True)
    monkeypatch.setattr(distributed, "active", lambda: False)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(distributed.dist, "init_process_group", join)
    with pytest.raises(Joined):
        distributed.init("cuda")
    assert chosen == [1]


def run_passes(star: Path, out: Path, ranks: int) -> list[dict]:
    """tests/train/ddp_passes.py on ``ranks`` torchrun ranks (1: a plain process): what each rank held."""
    out.mkdir()
    script = str(TESTS / "ddp_passes.py")
    if ranks == 1:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
            [str(Path(cryoai.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
        for name in ("RANK", "WORLD_SIZE"):
            env.pop(name, None)
        done = subprocess.run([sys.executable, script, str(star), str(out)], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-20000:]
    else:
        torchrun(script, str(star), str(out), ranks=ranks)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(ranks)]


def test_passes_after_the_map_are_shared_between_ranks(tiny_set, tmp_path):
    """The fit scores, keep mask, contrast scales and ``--classes`` on two ranks: each rank does
    its half of every pass (before, each scored, measured and searched all 120 images and both
    ranks made every ab initio seed), and both end with the same scores, mask, scales, labels,
    poses and class maps; scores, mask and scales are the single process's (the classes may
    differ from it a little: each rank's searches estimate the noise from their share)."""
    (one,) = run_passes(tiny_set / "particles.star", tmp_path / "one", 1)
    r0, r1 = run_passes(tiny_set / "particles.star", tmp_path / "two", 2)
    assert one["scored"] == one["measured"] == [120] and set(one["searched"]) == {90}
    assert r0["scored"] == r1["scored"] == [60] and r0["measured"] == r1["measured"] == [60]
    assert set(r0["searched"]) == set(r1["searched"]) == {45}  # 90 kept, of 120
    assert len(r0["seeded"]) == len(r1["seeded"]) == 1  # 3 classes: two ab initio seeds, one per rank
    for key in ("rlnLogLikeliContribution", "rlnSelected", "scales", "labels", "rotations", "origins"):
        assert np.array_equal(r0[key], r1[key]), key
    assert all(torch.equal(a, b) for a, b in zip(r0["maps"], r1["maps"]))
    assert np.array_equal(r0["rlnSelected"], one["rlnSelected"]) and r0["rlnSelected"].sum() == 90
    assert np.allclose(r0["rlnLogLikeliContribution"], one["rlnLogLikeliContribution"], rtol=1e-4)
    assert np.allclose(r0["scales"], one["scales"], rtol=1e-4)
    kept = r0["rlnSelected"] == 1
    assert set(r0["labels"][kept]) == {1, 2, 3} and (r0["labels"][~kept] == 0).all()
