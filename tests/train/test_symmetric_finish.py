"""``cryoai train --symmetry G``: the finish writes a map symmetric in RELION's orientation and
poses in the asymmetric unit (mechanics on the tiny set; accuracy is for benchmarks)."""

from __future__ import annotations

import numpy as np
import pytest
import starfile
from helpers import symmetric_phantom, tiny_config, train_tiny

from cryoai.cli.main import main as cli
from cryoai.eval.align import transform_map
from cryoai.eval.map_symmetry import symmetry_score
from cryoai.geometry.symmetry import axis_rotation
from cryoai.io.mrc import read_map
from cryoai.simulate import simulate
from cryoai.train.symmetric_finish import symmetry_frame


def test_train_with_symmetry_writes_a_symmetric_map_and_poses_in_the_unit(tiny_set, tmp_path):
    train_tiny(tiny_set / "particles.star", tmp_path / "run", symmetry="C3")
    vol, apix = read_map(tmp_path / "run" / "volume.mrc")
    assert vol.shape == (16, 16, 16) and abs(apix - 8.0) < 1e-4
    assert symmetry_score(vol, "C3") > 0.95  # symmetric about z
    rot = starfile.read(tmp_path / "run" / "particles.star")["particles"]["rlnAngleRot"].to_numpy()
    assert (np.mod(rot, 360) < 120 + 1e-3).all()
    assert "symmetry C3: map and poses turned by R" in (tmp_path / "run" / "log.txt").read_text()


def test_train_refuses_an_unknown_group_in_one_line(tiny_set, tmp_path, capsys):
    code = cli(["train", str(tiny_set / "particles.star"), "-o", str(tmp_path / "x"), "--symmetry", "Q2", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--symmetry" in err[0] and "Cn or Dn" in err[0]


@pytest.fixture(scope="module")
def c4_set(tmp_path_factory):
    """120 images of a C4 phantom in RELION's orientation (box 16, 8 Å/px, SNR 10)."""
    out = tmp_path_factory.mktemp("c4")
    simulate(symmetric_phantom(16, "C4", seed=2), 8.0, 120, out, snr=10.0, shift_std_A=4.0, seed=1, progress=False)
    return out


def test_train_under_c4_keeps_relion_frame_and_writes_a_symmetric_map(c4_set, tmp_path, one_thread, monkeypatch):
    """Trained under the group, the map is C4 about z already: the finish's rounds reconstruct
    under C4 and the symmetric finish keeps that frame (no axis search, R = I, no extra round),
    the map written is symmetric, the warm start's poses are in the unit,
    and the final check measures pose stability modulo the group (an encoder pose equivalent
    under C4 to the refined one is stable, not 90° off)."""
    import cryoai.train.run_finish as run_finish

    groups = []
    real = run_finish.final_check
    monkeypatch.setattr(run_finish, "final_check", lambda *a, **k: groups.append(k.get("symmetry")) or real(*a, **k))
    train_tiny(c4_set / "particles.star", tmp_path / "run", symmetry="C4")
    assert groups == ["C4"]
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "about RELION's axes (the training frame): no axis search" in log
    assert "the finish's maps were symmetrised in this frame already" in log  # no extra symmetric round
    assert "symmetric refinement" not in log
    assert "check symmetry axes: pass" in log  # the warm start's C1 map about the axes found, in the verdict
    vol, _ = read_map(tmp_path / "run" / "volume.mrc")
    assert symmetry_score(vol, "C4") > 0.95
    first_round, _ = read_map(tmp_path / "run" / "volumes" / "final_round_1.mrc")  # the finish's rounds: under C4
    assert symmetry_score(first_round, "C4") > 0.95
    rot = starfile.read(tmp_path / "run" / "particles.star")["particles"]["rlnAngleRot"].to_numpy()
    assert (np.mod(rot, 360) < 90 + 1e-3).all()


def test_symmetry_frame_searches_only_off_relion_axes():
    """A C4 map about z keeps the identity; the same map turned 40° off z is searched and its axis found."""
    vol = symmetric_phantom(16, "C4", seed=2)
    lines = []
    assert np.array_equal(symmetry_frame(vol, "C4", lines.append), np.eye(3)) and "no axis search" in lines[-1]
    turn = axis_rotation((1.0, 0.0, 0.0), np.deg2rad(40.0))
    frame = symmetry_frame(transform_map(vol, turn), "C4", lines.append)
    assert "those used" in lines[-1]
    assert abs(frame[:, 2] @ turn[:, 2]) > np.cos(np.deg2rad(3.0))  # the 4-fold axis found where it was turned to
    assert np.array_equal(symmetry_frame(transform_map(vol, turn), "C4", lines.append, search=False), np.eye(3))


def test_the_group_acts_in_training_only_with_a_warm_start(tiny_set, tmp_path):
    """The group's operators (maps and pose losses about RELION's axes) are set only when a warm
    start puts the map in RELION's orientation; without one the frame is arbitrary (the
    symmetric finish then searches for the axes) and the finish's rounds stay C1."""
    from cryoai.data.particles import load_particles
    from cryoai.train.run_dir import RunDir
    from cryoai.train.trainer import Trainer

    for warm, expect in ((True, 3), (False, None)):
        run = RunDir(tmp_path / f"run_{warm}", quiet=True)
        try:
            trainer = Trainer(load_particles(tiny_set / "particles.star"), tiny_config(symmetry="C3", warm_start=warm),
                              run, progress=False)
            assert (None if trainer.operators is None else len(trainer.operators)) == expect
            assert trainer.pose_settings().symmetry == ("C3" if warm else "C1")
        finally:
            run.close()
