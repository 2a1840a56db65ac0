"""Training mechanics on tiny data: outputs, checkpoints and --resume, predict, half sets.

Convergence itself is guarded by tests/train/test_reconstruction.py and measured in benchmarks/reconstruction.py.
"""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import starfile
import torch

from helpers import tiny_config
from cryoai.cli.main import main as cli
from cryoai.data.particles import load_particles
from cryoai.io.mrc import read_map
from cryoai.phantom import phantom_map
from cryoai.simulate import simulate
from cryoai.train.checkpoint import Interrupted
from cryoai.train.run_dir import RunDir
from cryoai.train.trainer import Trainer


def test_train_writes_a_run_directory(tiny_set, tmp_path):
    """A run writes the map with its voxel size, poses for every particle, log, metrics, checkpoint."""
    particles = load_particles(tiny_set / "particles.star")
    run = RunDir(tmp_path / "run", quiet=True)
    Trainer(particles, tiny_config(keep="0.75"), run, progress=False).fit()
    run.close()
    vol, apix = read_map(tmp_path / "run" / "volume.mrc")
    assert vol.shape == (16, 16, 16) and apix == pytest.approx(8.0)
    out = starfile.read(tmp_path / "run" / "particles.star")
    assert len(out["particles"]) == 120
    kept = out["particles"]["rlnSelected"].to_numpy()  # --keep 0.75: the best 90 by their fit score
    score = out["particles"]["rlnLogLikeliContribution"].to_numpy()
    assert kept.sum() == 90 and score[kept == 1].min() >= score[kept == 0].max()
    assert {"rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"} <= set(out["particles"].columns)
    steps = [json.loads(line)["step"] for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert steps[0] == 0 and steps[-1] == 6
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert (tmp_path / "run" / "volumes" / "step_000003.mrc").is_file()
    cfg_rounds = tiny_config().final_iterations
    assert sorted(p.name for p in (tmp_path / "run" / "volumes").glob("final_round_*.mrc")) == [
        f"final_round_{k}.mrc" for k in range(1, cfg_rounds + 1)]
    # poses read back are proper rotations
    back = load_particles(tmp_path / "run" / "particles.star", datadir=str(tiny_set))
    R = back.rotations
    assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-5)


class Crash(Exception):
    pass


def crash(step: int) -> None:
    raise Crash


def ctrl_c(step: int) -> None:
    os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("stop, stopped_by, resumes_at", [(crash, Crash, 3), (ctrl_c, Interrupted, 4)])
def test_resume_continues_exactly(tiny_set, tmp_path, stop, stopped_by, resumes_at):
    """A run that crashes in step 3 (after its step-3 checkpoint), or gets Ctrl-C there (it stops
    after that step with a checkpoint of step 4), then resumes, ends with the weights of a run
    never interrupted: the data stream is a function of seed and step, the checkpoint holds the
    RNG state."""
    particles = load_particles(tiny_set / "particles.star")
    full = Trainer(particles, tiny_config(), RunDir(tmp_path / "full", quiet=True), progress=False)
    full.fit()
    part = Trainer(particles, tiny_config(), RunDir(tmp_path / "part", quiet=True), progress=False)
    step_once = part.train_step

    def stop_in_step_3(step):
        if step == 3:
            stop(step)
        return step_once(step)

    part.train_step = stop_in_step_3
    with pytest.raises(stopped_by):
        part.fit()
    resumed = Trainer(particles, tiny_config(), RunDir(tmp_path / "part", quiet=True), resume=True, progress=False)
    assert resumed.step == resumes_at
    resumed.fit()
    assert resumed.step == full.step == 6
    for key, value in full.encoder.state_dict().items():
        assert torch.equal(value, resumed.encoder.state_dict()[key]), key
    assert torch.equal(full.volume.values, resumed.volume.values)
    assert not torch.allclose(full.volume.values, part.volume.values)  # resuming did change something


def test_cli_train_predict_and_halves(tiny_set, tmp_path, capsys):
    """`cryoai train`, `cryoai predict` and `cryoai train --halves` from the command line."""
    star = str(tiny_set / "particles.star")
    assert cli(["train", star, "-o", str(tmp_path / "r"), "--steps", "3", "--batch-size", "8", "--quiet"]) == 0
    assert starfile.read(tmp_path / "r" / "particles.star")["particles"]["rlnSelected"].mean() >= 0.95  # auto, clean set
    assert (tmp_path / "r" / "report.html").is_file() and (tmp_path / "r" / "view.cxc").is_file()
    assert cli(["predict", str(tmp_path / "r"), star, "-o", str(tmp_path / "p.star"), "--quiet"]) == 0
    pred = starfile.read(tmp_path / "p.star")["particles"]
    assert len(pred) == 120 and np.isfinite(pred["rlnAngleTilt"]).all()
    assert cli(["train", star, "-o", str(tmp_path / "h"), "--steps", "3", "--batch-size", "8", "--halves", "--quiet"]) == 0
    halves = starfile.read(tmp_path / "h" / "particles.star")["particles"]
    assert sorted(set(halves["rlnRandomSubset"])) == [1, 2]
    for name in ("volume_half1.mrc", "volume_half2.mrc", "volume.mrc", "fsc.txt", "fsc.png", "fsc_halves.txt"):
        assert (tmp_path / "h" / name).is_file()
    verdict = json.loads((tmp_path / "h" / "verdict.json").read_text())  # the checks on the independent halves
    assert verdict["gold_standard"] and verdict["label"].startswith("gold standard")
    assert [d["name"] for d in verdict["diagnostics"]][-3:] == ["pose stability (half 1)", "pose stability (half 2)",
                                                                "figure-of-merit separation"]  # from particles.star


def test_cli_resume_without_checkpoint_is_one_line(tiny_set, tmp_path, capsys):
    code = cli(["train", str(tiny_set / "particles.star"), "-o", str(tmp_path / "x"), "--resume", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "last.pt" in err[0]


@pytest.mark.parametrize("volume,loss", [("fouriernet", "symmetric"), ("voxel", "l2")])
def test_model_options_run(tiny_set, tmp_path, volume, loss):
    """FourierNet and the plain-L2 ablation run end to end."""
    particles = load_particles(tiny_set / "particles.star")
    cfg = tiny_config(volume=volume, loss=loss, fouriernet_hidden=16, steps=3)
    result = Trainer(particles, cfg, RunDir(tmp_path / volume, quiet=True), progress=False).fit()
    assert result["rotations"].shape == (120, 3, 3)


def test_worker_batches_equal_in_process_batches(tiny_set):
    """DataLoader workers read the same batches, in the same order, as the training process."""
    from cryoai.data.training_data import TrainingData
    from cryoai.train.batches import batches

    data = TrainingData(load_particles(tiny_set / "particles.star"), 16, 8)
    rows = [np.random.default_rng(i).integers(0, 120, 7) for i in range(5)]
    here, ahead = list(batches(data, rows.__getitem__, 5)), list(batches(data, rows.__getitem__, 5, workers=2))
    assert len(ahead) == 5
    for a, b, r in zip(here, ahead, rows):
        assert np.array_equal(a.indices.numpy(), r) and np.array_equal(b.indices.numpy(), r)
        for name in ("spectra", "images"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert torch.equal(a.ctf_params.as_array(), b.ctf_params.as_array())


def test_training_with_workers_is_identical(tiny_set, tmp_path):
    """Reading ahead changes nothing: the same weights after the supervised stage (subset rows in
    the batch) and after it (the stream restarts without them), and the same final poses."""
    particles = load_particles(tiny_set / "particles.star")
    trained = []
    for workers in (0, 1):
        run = RunDir(tmp_path / f"w{workers}", quiet=True)
        trainer = Trainer(particles, tiny_config(steps=10, workers=workers), run, progress=False)
        out = trainer.fit()
        run.close()
        trained.append((trainer.encoder.state_dict(), out))
    (enc0, out0), (enc1, out1) = trained
    for key in enc0:
        assert torch.equal(enc0[key], enc1[key]), key
    assert np.array_equal(out0["rotations"], out1["rotations"]) and np.array_equal(out0["origins_A"], out1["origins_A"])


def test_bf16_encoder_agrees_with_fp32_and_trains(tiny_set, tmp_path):
    """Mixed precision (--precision bf16) changes the encoder's poses by well under a degree, and
    a run under it trains to proper rotations."""
    import roma

    from cryoai.models.encoder import PoseEncoder

    torch.manual_seed(0)
    encoder = PoseEncoder(32).eval()
    images = torch.randn(64, 32, 32)
    with torch.no_grad():
        r32, o32 = encoder(images)
        encoder.bf16 = True
        r16, o16 = encoder(images)
    assert float(roma.rotmat_geodesic_distance(r32, r16).max()) < np.radians(2.0)
    assert torch.allclose(o32, o16, atol=0.05)
    run = RunDir(tmp_path / "bf16", quiet=True)
    out = Trainer(load_particles(tiny_set / "particles.star"), tiny_config(precision="bf16"), run, progress=False).fit()
    run.close()
    R = out["rotations"]
    assert np.isfinite(R).all() and np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-5)


def test_compiled_encoder_is_the_same_model():
    """--compile really compiles (dynamo traces a frame), keeps the state dict (checkpoints load
    either way) and the outputs."""
    from torch._dynamo.utils import counters

    from cryoai.train.trainer import build_models

    torch.manual_seed(0)
    eager, _ = build_models(tiny_config(), "cpu")
    torch.manual_seed(0)
    compiled, _ = build_models(tiny_config(compile=True), "cpu")
    assert list(eager.state_dict()) == list(compiled.state_dict())
    images = torch.randn(8, 16, 16)
    counters.clear()
    with torch.no_grad():
        (r0, o0), (r1, o1) = eager.eval()(images), compiled.eval()(images)
    assert counters["frames"]["ok"] >= 1
    assert torch.allclose(r0, r1, atol=1e-5) and torch.allclose(o0, o1, atol=1e-5)


def test_resume_after_the_warm_start_does_not_redo_it(tiny_set, tmp_path, monkeypatch):
    """A checkpoint follows the warm start: a run stopped in its first step resumes from it
    without a second warm start, and ends as a run never stopped."""
    particles = load_particles(tiny_set / "particles.star")
    full = Trainer(particles, tiny_config(), RunDir(tmp_path / "full", quiet=True), progress=False)
    full.fit(finish=False)
    part = Trainer(particles, tiny_config(), RunDir(tmp_path / "part", quiet=True), progress=False)

    def crash_in_step_0(step):
        raise Crash

    part.train_step = crash_in_step_0
    with pytest.raises(Crash):
        part.fit()
    resumed = Trainer(particles, tiny_config(), RunDir(tmp_path / "part", quiet=True), resume=True, progress=False)
    assert resumed.step == 0 and resumed.warm_done

    def no_second_warm_start():
        raise AssertionError("the warm start ran again")

    monkeypatch.setattr(resumed, "warm_start", no_second_warm_start)
    resumed.fit(finish=False)
    assert torch.equal(full.volume.values, resumed.volume.values)
    for key, value in full.encoder.state_dict().items():
        assert torch.equal(value, resumed.encoder.state_dict()[key]), key


@pytest.mark.parametrize("snr, expected", [(0.05, (4000, 24)), (np.inf, (1500, 20))])
def test_the_warm_start_grows_when_the_images_are_noise_dominated(tmp_path, snr, expected):
    """Unset (None), the warm start's subset and box follow the noise model: noise-dominated images
    (whitened) get 4000 images at box 24, clean ones 1500 at box 20; set values are kept, and the
    box never exceeds the training box."""
    simulate(phantom_map(32, 4.0), 4.0, 200, tmp_path / "sim", snr=snr, seed=3, progress=False)
    particles = load_particles(tmp_path / "sim" / "particles.star")
    cfg = tiny_config(train_box=32, encoder_box=32, warm_subset=None, warm_box=None)
    run = RunDir(tmp_path / "run", quiet=True)
    try:
        trainer = Trainer(particles, cfg, run, progress=False)
        assert (trainer.data.noise is not None) == np.isfinite(snr)
        assert trainer.warm_start_size() == expected
        trainer.cfg.warm_subset, trainer.cfg.warm_box = 300, 48
        assert trainer.warm_start_size() == (300, 32)
    finally:
        run.close()
