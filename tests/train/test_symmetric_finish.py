"""``cryoai train --symmetry G``: the finish writes a map symmetric in RELION's orientation and
poses in the asymmetric unit (mechanics on the tiny set; accuracy is for benchmarks)."""

from __future__ import annotations

import numpy as np
import starfile
from helpers import train_tiny

from cryoai.cli.main import main as cli
from cryoai.eval.map_symmetry import symmetry_score
from cryoai.io.mrc import read_map


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
