"""Bad input gives an InputError naming the file, and through the CLI exit code 2 with one
``error:`` line (or, for ``check-inputs``, every problem listed at once), never a traceback."""

from __future__ import annotations

import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from helpers import SHARED_DATA as DATA
from cryoai.cli.main import main as cli
from cryoai.data.particles import load_particles
from cryoai.errors import InputError

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared test data absent")


def write_stack(path: Path, data: np.ndarray) -> Path:
    with warnings.catch_warnings():  # mrcfile warns about the NaN we write on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        with mrcfile.new(path, overwrite=True) as m:
            m.set_data(np.asarray(data, dtype=np.float32))
    return path


def write_star(path: Path, names: list[str], extra: str = "") -> Path:
    """A RELION 3.0-style particle STAR written by hand (independent of our writer)."""
    rows = "\n".join(f"{n} 15000 14000 10 300 2.7 0.1 1.5" for n in names)
    path.write_text("data_\nloop_\n_rlnImageName #1\n_rlnDefocusU #2\n_rlnDefocusV #3\n_rlnDefocusAngle #4\n"
                    f"_rlnVoltage #5\n_rlnSphericalAberration #6\n_rlnAmplitudeContrast #7\n"
                    f"_rlnPixelSize #8\n{extra}{rows}\n")
    return path


@pytest.fixture
def good(tmp_path) -> Path:
    write_stack(tmp_path / "good.mrcs", np.random.default_rng(0).standard_normal((3, 8, 8)))
    return tmp_path / "good.mrcs"


def check_error(path: Path, capsys, *argv: str) -> str:
    """Run ``cryoai check-inputs path``: exit 2, one stderr line naming the file."""
    assert cli(["check-inputs", str(path), *argv]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and path.name in lines[0], err
    assert "Traceback" not in err
    return lines[0]


def test_good_set_passes(tmp_path, good, capsys):
    star = write_star(tmp_path / "ok.star", ["1@good.mrcs", "3@good.mrcs"])
    assert cli(["check-inputs", str(star)]) == 0
    out = capsys.readouterr().out
    assert "count:          2" in out and "box:            8 px" in out and "1.5 Å" in out
    assert "no problems found" in out


@needs_data
def test_real_set_passes(capsys):
    assert cli(["check-inputs", str(DATA / "real_aspire_80S_17ptcl/sample_particles_relion30.star")]) == 0
    out = capsys.readouterr().out
    assert "count:          17" in out and "200 px" in out and "1.338 Å" in out and "bright" in out


@pytest.mark.parametrize("kind", ["missing", "truncated", "past_end", "not_mrc", "non_square", "nan"])
def test_stack_problems_raise_on_read(tmp_path, good, kind, capsys):
    stack_name, index = "good.mrcs", 1
    if kind == "missing":
        stack_name = "absent.mrcs"
    elif kind == "truncated":
        data = good.read_bytes()
        (tmp_path / "cut.mrcs").write_bytes(data[: len(data) - 100])
        stack_name = "cut.mrcs"
    elif kind == "past_end":
        index = 5
    elif kind == "not_mrc":
        (tmp_path / "junk.mrcs").write_bytes(np.random.default_rng(0).bytes(2000))
        stack_name = "junk.mrcs"
    elif kind == "non_square":
        write_stack(tmp_path / "rect.mrcs", np.zeros((2, 8, 10)))
        stack_name = "rect.mrcs"
    elif kind == "nan":
        data = np.zeros((3, 8, 8))
        data[1, 2, 3] = np.nan
        write_stack(tmp_path / "nan.mrcs", data)
        stack_name, index = "nan.mrcs", 2
    star = write_star(tmp_path / "p.star", [f"{index}@{stack_name}"])
    particles = load_particles(star)  # metadata loads; the images fail
    with pytest.raises(InputError, match=stack_name.replace(".", r"\.")) as e:
        particles.images([0])
    assert "\n" not in str(e.value)
    assert cli(["check-inputs", str(star)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err == ""
    problems = [line for line in captured.out.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 1 and stack_name in problems[0]


def test_nan_names_the_particle(tmp_path):
    data = np.zeros((3, 8, 8))
    data[2, 0, 0] = np.inf
    write_stack(tmp_path / "nan.mrcs", data)
    particles = load_particles(write_star(tmp_path / "p.star", ["1@nan.mrcs", "2@nan.mrcs", "3@nan.mrcs"]))
    particles.images([0, 1])  # only requested images are checked
    with pytest.raises(InputError, match=r"image 3 .*particle 2"):
        particles.images([1, 2])


def test_mixed_boxes(tmp_path, good, capsys):
    write_stack(tmp_path / "big.mrcs", np.zeros((2, 10, 10)))
    star = write_star(tmp_path / "p.star", ["1@good.mrcs", "1@big.mrcs"])
    with pytest.raises(InputError, match=r"big\.mrcs.*10 px"):
        load_particles(star).images([0, 1])
    assert cli(["check-inputs", str(star)]) == 2
    assert "big.mrcs" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"data_\n\n", b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
                                     b"hello world, not a star file\n"])
def test_not_star_or_empty(tmp_path, content, capsys):
    path = tmp_path / "bad.star"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"bad\.star"):
        load_particles(path)
    check_error(path, capsys)


def test_star_without_image_names(tmp_path, capsys):
    path = tmp_path / "noimg.star"
    path.write_text("data_particles\nloop_\n_rlnDefocusU #1\n_rlnVoltage #2\n15000 300\n")
    with pytest.raises(InputError, match="rlnImageName"):
        load_particles(path)
    assert "rlnImageName" in check_error(path, capsys)


def test_star_with_header_but_no_rows(tmp_path, capsys):
    path = write_star(tmp_path / "norows.star", [])
    check_error(path, capsys)


def test_missing_particle_file_and_bad_cs(tmp_path, capsys):
    check_error(tmp_path / "nothere.star", capsys)
    (tmp_path / "junk.cs").write_bytes(np.random.default_rng(1).bytes(500))
    check_error(tmp_path / "junk.cs", capsys)


def test_check_inputs_lists_every_problem_at_once(tmp_path, good, capsys):
    data = np.zeros((2, 8, 8))
    data[0, 0, 0] = np.nan
    write_stack(tmp_path / "nan.mrcs", data)
    cut = good.read_bytes()
    (tmp_path / "cut.mrcs").write_bytes(cut[:1500])
    write_stack(tmp_path / "big.mrcs", np.zeros((1, 10, 10)))
    names = ["1@good.mrcs", "7@good.mrcs", "1@absent.mrcs", "1@cut.mrcs", "1@nan.mrcs", "1@big.mrcs"]
    star = write_star(tmp_path / "many.star", names)
    assert cli(["check-inputs", str(star)]) == 2
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 5, out
    for name in ("good.mrcs", "absent.mrcs", "cut.mrcs", "nan.mrcs", "big.mrcs"):
        assert any(name in line for line in problems), name
    assert "count:          6" in out


@needs_data
def test_check_inputs_reports_absent_stacks_of_real_set(capsys):
    assert cli(["check-inputs", str(DATA / "real_relion31_5ptcl/relion31.6opticsgroups.star")]) == 2
    out = capsys.readouterr().out
    assert "count:          139" in out and "optics groups:  6" in out
    assert "0003_shiny.mrcs: particle stack not found" in out


@pytest.mark.parametrize("kind", ["truncated", "foreign", "not_torch"])
def test_bad_checkpoint_is_one_line(tmp_path, kind):
    """A truncated checkpoint, a torch file of something else, or junk: one line naming it."""
    import torch

    from cryoai.train.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "last.pt"
    if kind == "truncated":
        save_checkpoint(path, {"step": 3, "encoder": {"w": torch.zeros(1000)}, "volume": {}, "opt_encoder": {},
                               "opt_volume": {}, "config": {}})
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "foreign":
        torch.save({"model": torch.zeros(3)}, path)
    else:
        path.write_bytes(b"not a checkpoint\n" * 20)
    with pytest.raises(InputError, match=r"last\.pt: (unreadable|not a cryoai training) checkpoint") as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value) and "another -o" in str(e.value)
