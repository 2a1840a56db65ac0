"""``cryoai align-symmetry``: an O map turned by a known rotation comes back to RELION's orientation."""

from __future__ import annotations

import numpy as np
from helpers import symmetric_phantom

from cryoai.cli.main import main
from cryoai.eval.align import transform_map
from cryoai.eval.map_symmetry import correlation, symmetry_score
from cryoai.geometry.symmetry import axis_rotation
from cryoai.io.mrc import read_map, write_map


def test_align_symmetry_writes_the_map_in_the_standard_orientation(tmp_path, capsys):
    v0 = symmetric_phantom(32, "O", seed=3)
    write_map(tmp_path / "in.mrc", transform_map(v0, axis_rotation((0.2, 0.9, -0.4), 0.8)), 1.7)
    out = tmp_path / "out.mrc"
    assert main(["align-symmetry", str(tmp_path / "in.mrc"), "--symmetry", "O", "-o", str(out), "--symmetrise"]) == 0
    text = capsys.readouterr().out
    assert "symmetry O: score" in text and "RELION Euler angles" in text
    aligned, apix = read_map(out)
    assert apix == np.float32(1.7)
    assert correlation(aligned, v0) > 0.95 and symmetry_score(aligned, "O") > 0.99
    assert not list(tmp_path.glob("*.tmp*"))


def test_check_prints_a_table_and_bad_input_is_one_line(tmp_path, capsys):
    write_map(tmp_path / "in.mrc", symmetric_phantom(24, "C3", seed=1), 2.0)
    assert main(["align-symmetry", str(tmp_path / "in.mrc"), "--check", "--max-n", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:5]] == ["C2", "C3", "D2", "D3"]
    assert "C3" in lines[-1] and lines[2].endswith("*")
    for argv, message in ((["--symmetry", "I5", "-o", "x.mrc"], "symmetry 'I5'"), (["--symmetry", "O"], "-o OUT.mrc")):
        assert main(["align-symmetry", str(tmp_path / "in.mrc"), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and message in err
