"""End-to-end regression guard: ab initio reconstruction of a small simulated set must converge.

The built-in phantom at box 32 (5 Å/px) with CTF and shifts (σ = 5 Å), no noise: default
training settings scaled down to ~1.5 minutes on a CPU must recover the map to FSC=0.5 ≤ 4.5 px
against the truth (either hand), the rotations to a median ≤ 8° and the origins to 0.5 px
(measured: 3.8 px, 5.1°, 0.28 px; a failed run gives 60–90° and no FSC=0.5 crossing before
8 px). A broken convention (sign, mirror, off-by-one), a broken warm start or a collapsed
encoder fails it.
"""

from __future__ import annotations

import pytest

from cryoai.eval.compare import compare_maps
from cryoai.data.particles import load_particles
from cryoai.eval.poses import evaluate_poses
from cryoai.io.mrc import read_map
from cryoai.phantom import phantom_map
from cryoai.simulate import simulate
from cryoai.train.config import default_config
from cryoai.train.run_dir import RunDir
from cryoai.train.trainer import Trainer


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("recon")
    simulate(phantom_map(32, 5.0), 5.0, 1500, out, shift_std_A=5.0, seed=11, progress=False)
    return out


def test_ab_initio_reconstruction_converges(small_set, tmp_path):
    particles = load_particles(small_set / "particles.star")
    cfg = default_config(32, "cpu", steps=700, warm_subset=1000, final_iterations=2, seed=0)
    run = RunDir(tmp_path / "run", quiet=True)
    result = Trainer(particles, cfg, run, progress=False).fit()
    run.close()
    errors = evaluate_poses(result["rotations"], particles.rotations, result["origins_A"], particles.origins_A, 5.0)
    truth, _ = read_map(small_set / "truth.mrc")
    volume, apix = read_map(tmp_path / "run" / "volume.mrc")
    res = compare_maps(truth, volume, apix, align=True)
    assert errors["rot_median_deg"] <= 8.0, errors
    assert errors["trans_median_px"] <= 0.5, errors
    assert res["res_0.5_px"] is not None and res["res_0.5_px"] <= 4.5, res["res_0.5_px"]
