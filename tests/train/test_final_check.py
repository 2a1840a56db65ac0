"""The final check (train/final_check.py) at the end of a tiny run: half maps, the FSC files and
a verdict; a stack of pure noise is flagged, a good set of poses is not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryoai.data.particles import load_particles
from cryoai.data.training_data import TrainingData
from cryoai.geometry.rotations import random_rotations
from cryoai.io.mrc import read_map
from cryoai.phantom import phantom_map
from cryoai.simulate import simulate
from cryoai.train.final_check import record_verdict
from cryoai.train.half_maps import half_maps
from cryoai.train.run_dir import RunDir
from helpers import tiny_config, train_tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def train(star, out) -> dict:
    """A tiny run's verdict."""
    train_tiny(star, out)
    return json.loads((out / "verdict.json").read_text())


def test_a_tiny_run_writes_half_maps_fsc_and_a_verdict(tiny_set, tmp_path):
    out = tmp_path / "run"
    verdict = train(tiny_set / "particles.star", out)
    half1, apix = read_map(out / "volume_half1.mrc")
    assert half1.shape == (16, 16, 16) and apix == pytest.approx(8.0)
    assert (out / "volume_half2.mrc").is_file() and (out / "fsc_halves.txt").is_file() and (out / "fsc_halves.png").is_file()
    assert verdict["label"] == "halves share one refinement: optimistic, not gold standard" and not verdict["gold_standard"]
    assert len(verdict["fsc"]) == 9 and verdict["verdict"] in ("pass", "warn")
    names = [d["name"] for d in verdict["diagnostics"]]
    assert names == ["half-map resolution", "non-spherical agreement", "viewing-direction coverage", "pose stability",
                     "figure-of-merit separation"]  # train writes rlnLogLikeliContribution (train/scores.py)
    log = (out / "log.txt").read_text()
    assert "FSC 0.143 at" in log and "optimistic" in log


def test_a_run_on_pure_noise_is_flagged(tmp_path):
    noise = tmp_path / "noise"
    simulate(phantom_map(16, 8.0), 8.0, 120, noise, snr=1e-6, shift_std_A=4.0, seed=2, progress=False)
    verdict = train(noise / "particles.star", tmp_path / "run")
    assert verdict["verdict"] == "warn", verdict["diagnostics"]
    log = (tmp_path / "run" / "log.txt").read_text()
    assert any(line.split("  ", 1)[-1].startswith("WARNING:") for line in log.splitlines())


def test_true_poses_pass_and_random_poses_warn(tiny_set, tmp_path):
    """The map checks on the tiny set's half maps: from its true poses, and from random ones."""
    particles = load_particles(tiny_set / "particles.star")
    data = TrainingData(particles, 16, 16)
    rows = np.arange(len(particles))
    for name, rotations in (("true", particles.rotations), ("random", random_rotations(len(rows), np.random.default_rng(0)))):
        h = half_maps(data, rows, rotations, particles.origins_A)
        run = RunDir(tmp_path / name, quiet=True)
        verdict = record_verdict(run, h.maps, data.apix, rotations, [], gold=False)
        run.close()
        values = {d["name"]: (d["value"], d["verdict"]) for d in verdict["diagnostics"]}
        print(name, values)
        assert verdict["verdict"] == ("pass" if name == "true" else "warn"), values


def test_the_figure_of_merit_is_reported_when_particles_star_has_it(tmp_path):
    """A bimodal rlnLogLikeliContribution (a junk group) is reported, as information only."""
    import pandas as pd

    from cryoai.io.star import write_star

    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0, 1, 300), rng.normal(-10, 1, 100)])
    run = RunDir(tmp_path / "run", quiet=True)
    write_star(run.path / "particles.star", {"particles": pd.DataFrame({"rlnImageName": [f"{i}@x.mrcs" for i in range(400)],
                                                                        "rlnLogLikeliContribution": scores})})
    maps = tuple(rng.normal(size=(16, 16, 16)) for _ in range(2))
    verdict = record_verdict(run, maps, 8.0, random_rotations(400, rng), [], gold=False)
    run.close()
    merit = verdict["diagnostics"][-1]
    assert merit["name"] == "figure-of-merit separation" and merit["verdict"] == "info" and merit["value"] > 0.8
    assert "likely junk" in merit["explanation"]


def test_views_are_judged_before_folding_into_a_groups_asymmetric_unit(tiny_set, tmp_path):
    """Under --symmetry the final poses lie in the asymmetric unit (for O, 1/24 of the sphere):
    coverage is judged on the poses before folding (``training_frame``), or every symmetric run
    would warn of collapsed views."""
    from cryoai.geometry.symmetry import to_asymmetric_unit
    from cryoai.train.finish import PoseSettings
    from cryoai.train.final_check import final_check
    from cryoai.train.trainer import build_models

    particles = load_particles(tiny_set / "particles.star")
    data = TrainingData(particles, 16, 16)
    encoder, volume = build_models(tiny_config(), "cpu")
    rotations = random_rotations(len(particles), np.random.default_rng(1))
    folded = (to_asymmetric_unit(rotations, "O"), particles.origins_A)
    how = PoseSettings(radius=8.0, symmetric=True)

    def coverage(training_frame, name):
        run = RunDir(tmp_path / name, quiet=True)
        verdict = final_check(encoder, volume, data, folded, how, run, 0, training_frame)
        run.close()
        return next(d for d in verdict["diagnostics"] if d["name"] == "viewing-direction coverage")["verdict"]

    assert coverage(rotations, "before") == "pass"
    assert coverage(None, "folded") == "warn"  # what the check saw before the fix


def test_pose_stability_is_judged_on_rows_whose_pose_did_not_come_from_the_encoder(tiny_set, tmp_path):
    """Where most final poses are the encoder's own (a large set under a time limit), they agree
    with the encoder trivially: the check must be drawn from the rows whose poses came from
    elsewhere (the warm-start subset's, ``independent_rows``), which here lie far from it."""
    from cryoai.train.finish import PoseSettings
    from cryoai.train.final_check import final_check
    from cryoai.train.predict import predict_poses_sharded
    from cryoai.train.trainer import build_models

    particles = load_particles(tiny_set / "particles.star")
    data = TrainingData(particles, 16, 16)
    encoder, volume = build_models(tiny_config(), "cpu")
    how = PoseSettings(radius=8.0, symmetric=True)
    rot, _ = predict_poses_sharded(encoder, volume, data, how.radius, how.symmetric, progress=False, refine=False)
    independent = np.arange(0, len(rot), 4)  # a quarter: their poses from a search, far from the encoder's
    rot[independent] = random_rotations(len(independent), np.random.default_rng(2))

    def stability(rows, name):
        run = RunDir(tmp_path / name, quiet=True)
        verdict = final_check(encoder, volume, data, (rot, particles.origins_A), how, run, 0, independent_rows=rows)
        run.close()
        return next(d for d in verdict["diagnostics"] if d["name"] == "pose stability")

    judged = stability(independent, "independent")
    assert judged["verdict"] == "warn" and judged["value"] > 60  # random against the encoder: ~126° median
    assert stability(None, "any")["value"] < 36  # 3 in 4 rows are the encoder's own: what the check saw before
