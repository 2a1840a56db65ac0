"""The streaming STAR reader and writer (io/star.py) give exactly what ``starfile`` gives."""

from __future__ import annotations

import glob
import warnings
from pathlib import Path

import pandas as pd
import pytest
import starfile

import cryoai.io.star as star
from helpers import SHARED_DATA as SHARED
from cryoai.io.star import read_star, write_star

FILES = sorted(glob.glob(str(SHARED / "**" / "*.star"), recursive=True))


def _starfile_read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return starfile.read(path, always_dict=True)


@pytest.mark.skipif(not FILES, reason="shared/data not present")
def test_reader_matches_starfile_on_shipped_files():
    fast = 0
    for path in FILES:
        got, ref = star._read_fast(Path(path)), _starfile_read(path)
        if got is None:
            continue
        fast += 1
        assert list(got) == list(ref), path
        for name in ref:
            if isinstance(ref[name], pd.DataFrame):
                pd.testing.assert_frame_equal(got[name], ref[name], check_exact=True)
            else:
                assert got[name] == ref[name], (path, name)
    assert fast >= len(FILES) - 2  # RELION's "# version" comments and all shipped files take the fast path


def _blocks():
    return {"general": {"rlnImageSize": 64, "rlnName": "a b", "rlnValue": 2.5},
            "optics": pd.DataFrame({"rlnOpticsGroup": [1, 2], "rlnImagePixelSize": [1.25, 2.5]}),
            "particles": pd.DataFrame({"rlnImageName": [f"{i:06d}@stack one.mrcs" if i % 3 else f"{i:06d}@s.mrcs"
                                                        for i in range(1, 41)],
                                       "rlnAngleRot": [0.1 * i for i in range(40)],
                                       "rlnOpticsGroup": [1 + i % 2 for i in range(40)],
                                       "rlnNote": ["" if i % 5 else "x" for i in range(40)]})}


def test_writer_matches_starfile_in_chunks(tmp_path, monkeypatch):
    """Same text as starfile.write (quoting, float format, key-value blocks) whatever the chunk."""
    monkeypatch.setattr(star, "WRITE_CHUNK", 7)
    blocks = _blocks()
    starfile.write(blocks, tmp_path / "ref.star", overwrite=True)
    write_star(tmp_path / "got.star", blocks)
    ref = (tmp_path / "ref.star").read_text().splitlines()[1:]  # line 1: who wrote it, when
    assert (tmp_path / "got.star").read_text().splitlines()[1:] == ref
    back = read_star(tmp_path / "got.star")
    pd.testing.assert_frame_equal(back["particles"], _starfile_read(tmp_path / "ref.star")["particles"])
    assert back["particles"]["rlnImageName"].iloc[0] == "000001@stack one.mrcs"


def test_single_quotes_fall_back_to_starfile(tmp_path):
    path = tmp_path / "q.star"
    path.write_text("data_particles\n\nloop_\n_rlnImageName #1\n_rlnNote #2\n1@a.mrcs 'two words'\n2@a.mrcs x\n")
    assert star._read_fast(path) is None
    assert list(read_star(path)["particles"]["rlnNote"]) == ["two words", "x"]


@pytest.mark.parametrize("names", [
    ["000002@b/s2.mrcs", " 1@a.mrcs", "3@b/s2.mrcs", "10@a.mrcs "],  # Arrow path
    ["1@a.mrcs", "stack.mrcs", "2.0@a.mrcs"],  # unusual: the pandas path
])
def test_image_names_arrow_path_matches_pandas(names, monkeypatch):
    from pathlib import Path as P

    import cryoai.data.particles as particles

    column = pd.Series(names, dtype="str")
    got = particles._parse_image_names(column, P("x.star"))
    monkeypatch.setattr(particles, "_parse_image_names_arrow", lambda _: None)
    ref = particles._parse_image_names(column, P("x.star"))
    assert got[0] == ref[0]
    assert got[1].tolist() == ref[1].tolist() and got[2].tolist() == ref[2].tolist()
    assert got[1].dtype == ref[1].dtype == got[2].dtype == ref[2].dtype
