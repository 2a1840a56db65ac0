"""``cryoai evaluate`` leaves a simulation's junk rows out of the pose errors (truth.star beside
the --truth STAR, or --junk-truth), says how many, and behaves as before without a junk truth."""

from __future__ import annotations

import json
import shutil

import pytest

from cryoai.cli.main import main
from cryoai.io.star import read_star, write_star

starfile = pytest.importorskip("starfile")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """40 rows, 50 % junk; predictions = the truth with every junk row's tilt moved by 90°."""
    root = tmp_path_factory.mktemp("evaljunk")
    data = root / "data"
    assert main(["simulate", "--n", "40", "--box", "16", "--apix", "4", "--junk-fraction", "0.5",
                 "--seed", "3", "-o", str(data)]) == 0
    blocks = read_star(data / "particles.star")
    kinds = starfile.read(data / "truth.star")["particles"]["cryoaiJunkKind"].to_numpy()
    pred = blocks["particles"].copy()
    pred.loc[kinds != "particle", "rlnAngleTilt"] = (pred.loc[kinds != "particle", "rlnAngleTilt"] + 90) % 180
    write_star(root / "pred.star", {"optics": blocks["optics"], "particles": pred})
    return root, data, int((kinds != "particle").sum())


def evaluate(capsys, *args) -> dict:
    assert main(["evaluate", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_junk_beside_the_truth_is_excluded(sim, capsys):
    root, data, n_junk = sim
    m = evaluate(capsys, str(root / "pred.star"), "--truth", str(data / "particles.star"))
    assert n_junk == 20 and m["n_junk_excluded"] == n_junk
    assert m["n_particles"] == 40 - n_junk
    assert m["frac_within_5deg"] == 1.0 and m["junk_truth"].endswith("truth.star")


def test_without_junk_truth_every_row_counts(sim, capsys, tmp_path):
    """The same STAR copied where no truth.star sits: all 40 rows, the junk rows' errors included."""
    root, data, n_junk = sim
    shutil.copy(data / "particles.star", tmp_path / "particles.star")
    m = evaluate(capsys, str(root / "pred.star"), "--truth", str(tmp_path / "particles.star"))
    assert m["n_particles"] == 40 and m["n_junk_excluded"] == 0 and m["junk_truth"] is None
    assert m["frac_within_5deg"] < 0.9
    m = evaluate(capsys, str(root / "pred.star"), "--truth", str(tmp_path / "particles.star"),
                 "--junk-truth", str(data / "truth.star"))
    assert m["n_particles"] == 40 - n_junk and m["frac_within_5deg"] == 1.0


def test_text_report_says_how_many(sim, capsys):
    root, data, n_junk = sim
    assert main(["evaluate", str(root / "pred.star"), "--truth", str(data / "particles.star")]) == 0
    assert f"excluded {n_junk} junk particles" in capsys.readouterr().out


def test_junk_truth_without_kinds_is_a_one_line_error(sim, capsys):
    root, data, _ = sim
    rc = main(["evaluate", str(root / "pred.star"), "--truth", str(data / "particles.star"),
               "--junk-truth", str(data / "particles.star")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "--junk-truth" in err
