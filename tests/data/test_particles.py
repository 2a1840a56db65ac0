"""Loading the shipped particle sets: counts, boxes, pixel sizes, images, CTF and poses, checked
against mrcfile reads, the data README and cryoDRGN's own parses (metadata_conversion/*.pkl)."""

from __future__ import annotations

import pickle
import tracemalloc
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from helpers import SHARED_DATA as DATA
from cryoai.data.particles import CTF_COLUMNS, load_particles
from cryoai.errors import InputError
from cryoai.io.stack import ImageStack

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="shared test data absent")


def full_stack(path: Path) -> np.ndarray:
    """The whole stack read by mrcfile (the reference for our lazy reads)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.open(path, permissive=True) as m:
            return np.asarray(m.data, dtype=np.float32).reshape(-1, m.data.shape[-2], m.data.shape[-1])


# (file, apix override, count, box, apix): values from shared/data/README.md
SETS = [
    ("real_aspire_80S_17ptcl/sample_particles_relion30.star", None, 17, 200, 1.338),
    ("real_aspire_80S_17ptcl/sample_particles_relion31.star", None, 17, 200, 1.4),
    ("real_empiar10076_7ptcl/empiar_10076_7.star", None, 7, 320, 1.31),
    ("real_empiar10076_7ptcl/empiar_10076_7.cs", None, 7, 320, 1.31),
    ("real_relion31_5ptcl/relion31.star", None, 5, 256, 2.806),
    ("real_relion31_5ptcl/relion31.v2.star", None, 5, 256, 2.806),
    ("sim_toy_cryodrgn/toy_projections.star", 1.0, 1000, 30, 1.0),
    ("sim_empiar10076_classDE_32/10076_classD_32_clean.star", None, 576, 32, 13.1),
    ("sim_empiar10076_classDE_32/10076_classE_32_clean.star", None, 720, 32, 13.1),
    ("relion_project_pointmass_ctf/relion_proj_batch.star", None, 24, 64, 3.54),
    ("relion_project_pointmass_ctf/relion_proj_batch_pfac3.star", None, 24, 64, 3.54),
    ("relion_project_70S/rln_proj_64.star", 1.0, 5, 64, 1.0),
    ("relion_project_70S/rln_proj_65_shifted.star", None, 4, 65, 1.0),
    ("relion_project_70S/rln_proj_65_centered.star", None, 4, 65, 1.0),
]


@pytest.mark.parametrize("name, apix, count, box, pixel", SETS, ids=[s[0].split("/")[-1] for s in SETS])
def test_sets_load_with_images(name, apix, count, box, pixel):
    p = load_particles(DATA / name, apix=apix)
    assert (len(p), p.box, len(p.table)) == (count, box, count)
    assert p.apix == pytest.approx(pixel, rel=1e-5)
    rows = np.array([count - 1, 0, count // 2])
    images = p.images(rows)
    assert images.dtype == np.float32 and images.shape == (3, box, box)
    stack_file = p.stack.files[p.stack.file_ids[0]]
    expected = full_stack(stack_file)[p.stack.indices[rows]]
    np.testing.assert_array_equal(images, expected)


def test_missing_pixel_size_asks_for_apix():
    with pytest.raises(InputError, match="--apix") as e:
        load_particles(DATA / "sim_toy_cryodrgn/toy_projections.star")
    assert "toy_projections.star" in str(e.value)


def test_empiar10076_star_and_cs_agree():
    star = load_particles(DATA / "real_empiar10076_7ptcl/empiar_10076_7.star")
    cs = load_particles(DATA / "real_empiar10076_7ptcl/empiar_10076_7.cs")
    order = np.random.default_rng(1).permutation(7)
    np.testing.assert_array_equal(star.images(order), cs.images(order))
    np.testing.assert_allclose(star.ctf.as_array(), cs.ctf.as_array(), rtol=1e-6, atol=1e-6)  # .cs holds float32
    c = star.ctf[0]
    assert (c.defocus_u_A, c.defocus_v_A, c.defocus_angle_deg) == pytest.approx((15301.1, 14916.4, 5.28))
    assert (c.voltage_kV, c.cs_mm, c.amp_contrast) == pytest.approx((300, 2.7, 0.07))
    assert star.rotations is None and cs.rotations is None


def test_ctf_joined_from_optics_groups():
    p = load_particles(DATA / "real_aspire_80S_17ptcl/sample_particles_relion31.star")
    groups = p.table["rlnOpticsGroup"].to_numpy()
    np.testing.assert_array_equal(p.ctf.voltage_kV, np.where(groups == 1, 300.0, 200.0))
    assert p.optics is not None and len(p.optics) == 2


def test_origins_pixels_and_angstrom_agree():
    p = load_particles(DATA / "relion_project_pointmass_ctf/relion_proj_batch.star")
    px = p.table[["rlnOriginX", "rlnOriginY"]].to_numpy(float)
    np.testing.assert_allclose(p.origins_A / 3.54, px, atol=1e-5)
    p30 = load_particles(DATA / "real_aspire_80S_17ptcl/sample_particles_relion30.star")
    np.testing.assert_allclose(p30.origins_A, p30.table[["rlnOriginX", "rlnOriginY"]].to_numpy(float) * p30.apix)


def test_pfcrt_star_matches_cryodrgn_pickles():
    folder = DATA / "metadata_conversion"
    p = load_particles(folder / "FinalRefinement-OriginalParticles-PfCRT.star")
    R, t = pickle.load(open(folder / "pose.star.pkl", "rb"))
    ref = pickle.load(open(folder / "ctf1.pkl", "rb"))
    D = ref[0, 0]
    np.testing.assert_allclose(p.rotations, R, atol=1e-6)
    np.testing.assert_allclose(p.origins_A / p.apix / D, t, atol=1e-7)
    np.testing.assert_allclose(ref[:, 1], p.apix, rtol=1e-6)
    # cryoDRGN's columns dfU, dfV, dfang, kV, Cs, w, phase; w = 0.1 was its default, as ours
    for name, column in zip(CTF_COLUMNS[:7], ref[:, 2:9].T):
        np.testing.assert_allclose(getattr(p.ctf, name), column, rtol=1e-6, atol=1e-6, err_msg=name)
    assert any("amplitude contrast" in n for n in p.notes)


def test_cryosparc_cs_matches_cryodrgn_pickles():
    folder = DATA / "metadata_conversion"
    p = load_particles(folder / "cryosparc_P12_J24_001_particles.cs")
    R, t = pickle.load(open(folder / "pose.cs.pkl", "rb"))
    ref = pickle.load(open(folder / "ctf2.pkl", "rb"))
    assert (len(p), p.box) == (2019, 180) and p.apix == pytest.approx(2.95)
    np.testing.assert_allclose(p.rotations, R, atol=1e-5)
    np.testing.assert_allclose(p.origins_A / p.apix / p.box, t, atol=1e-6)
    np.testing.assert_allclose(ref[:, 0], p.box)
    for name, column in zip(CTF_COLUMNS[:7], ref[:, 2:9].T):
        np.testing.assert_allclose(getattr(p.ctf, name), column, rtol=1e-5, atol=1e-4, err_msg=name)


def test_sim_class_d_poses_match_pickle():
    p = load_particles(DATA / "sim_empiar10076_classDE_32/10076_classD_32_clean.star")
    R, t = pickle.load(open(DATA / "sim_empiar10076_classDE_32/pose_classD.pkl", "rb"))
    np.testing.assert_allclose(p.rotations, R, atol=1e-5)
    np.testing.assert_allclose(p.origins_A / p.apix / p.box, t, atol=1e-6)


def test_metadata_only_sets_load():
    r5 = load_particles(DATA / "metadata_conversion/relion5.star")
    assert (len(r5), r5.box, r5.apix) == (17, 448, pytest.approx(0.89))
    assert r5.ctf.voltage_kV[0] == 100 and r5.rotations.shape == (17, 3, 3)
    j2 = load_particles(DATA / "metadata_conversion/cryosparc_J2_particles_exported.cs")
    assert (len(j2), j2.box) == (22, 300) and j2.rotations is None
    six = load_particles(DATA / "real_relion31_5ptcl/relion31.6opticsgroups.star")
    assert (len(six), six.box, six.apix) == (139, 196, 1.25)
    with pytest.raises(InputError, match="0003_shiny.mrcs"):
        six.images([0])


def test_subset_keeps_rows_and_images():
    p = load_particles(DATA / "real_aspire_80S_17ptcl/sample_particles_relion30.star")
    rows = np.array([5, 2, 11])
    s = p.subset(rows)
    assert len(s) == 3 and s.table["rlnImageName"].tolist() == p.table["rlnImageName"].iloc[rows].tolist()
    np.testing.assert_array_equal(s.images([0, 1, 2]), p.images(rows))
    np.testing.assert_array_equal(s.rotations, p.rotations[rows])


def _write_stack(path: Path, data: np.ndarray) -> None:
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data)


def test_runs_grouped_across_files_in_request_order(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    stacks = [rng.standard_normal((n, 6, 6)).astype(np.float32) for n in (5, 7, 4)]
    for i, s in enumerate(stacks):
        _write_stack(tmp_path / f"s{i}.mrcs", s)
    pairs = [(f, i) for f, s in enumerate(stacks) for i in range(len(s))]
    rng.shuffle(pairs)
    stack = ImageStack([tmp_path / f"s{i}.mrcs" for i in range(3)], [p[0] for p in pairs], [p[1] for p in pairs])
    reads = []
    original = ImageStack._data

    class Spy:
        def __init__(self, data):
            self.data, self.shape = data, data.shape

        def __getitem__(self, key):
            reads.append((key.start, key.stop))
            return self.data[key]

    monkeypatch.setattr(ImageStack, "_data", lambda self, fid: Spy(original(self, fid)))
    request = rng.permutation(len(pairs))[:12]
    request = np.concatenate([request, request[:2]])  # repeats are allowed
    got = stack.images(request)
    want = np.stack([stacks[pairs[r][0]][pairs[r][1]] for r in request])
    np.testing.assert_array_equal(got, want)
    all_rows = np.arange(len(pairs))
    reads.clear()
    np.testing.assert_array_equal(stack.images(all_rows), np.stack([stacks[f][i] for f, i in pairs]))
    assert sorted(reads) == [(0, 4), (0, 5), (0, 7)]  # one slice per file when all are read


def test_reading_three_images_does_not_read_the_stack(tmp_path):
    path = tmp_path / "big.mrcs"
    n = 20000  # 328 MB on paper, sparse on disk
    m = mrcfile.new_mmap(path, shape=(n, 64, 64), mrc_mode=2, overwrite=True)
    for k in (3, 9000, 19999):
        m.data[k] = k
    m.close()
    stack = ImageStack([path], np.zeros(n, int), np.arange(n))
    tracemalloc.start()
    images = stack.images([19999, 3, 9000])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [float(im.mean()) for im in images] == [19999.0, 3.0, 9000.0]
    assert peak < 5e6


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint16, np.float16, np.float32])
def test_mrc_modes_convert_to_float32(tmp_path, dtype):
    data = (np.arange(3 * 4 * 4) % 100).reshape(3, 4, 4).astype(dtype)
    _write_stack(tmp_path / "m.mrcs", data)
    stack = ImageStack([tmp_path / "m.mrcs"], np.zeros(3, int), [2, 0, 1])
    out = stack.images([0, 1, 2])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, data[[2, 0, 1]].astype(np.float32))


def test_bare_stack_with_ctf_dict():
    ctf = dict(defocus_u_A=15000.0, defocus_v_A=14000.0, defocus_angle_deg=10.0, voltage_kV=300.0,
               cs_mm=2.7, amp_contrast=0.07)
    p = load_particles(DATA / "real_empiar10076_7ptcl/empiar_10076_7.mrc", apix=1.31, ctf=ctf)
    assert (len(p), p.box) == (7, 320)
    assert len(p.ctf) == 7 and p.ctf.as_array()[0].tolist() == [15000, 14000, 10, 300, 2.7, 0.07, 0, 0]
    np.testing.assert_array_equal(p.images([6]), full_stack(DATA / "real_empiar10076_7ptcl/empiar_10076_7.mrc")[[6]])
    assert load_particles(DATA / "real_empiar10076_7ptcl/empiar_10076_7.mrc", apix=1.31).ctf is None


def test_image_paths_resolve_in_project_layout_and_datadir(tmp_path):
    data = np.random.default_rng(4).standard_normal((2, 6, 6)).astype(np.float32)
    (tmp_path / "proj/Extract/job1").mkdir(parents=True)
    (tmp_path / "proj/Refine3D/job2").mkdir(parents=True)
    _write_stack(tmp_path / "proj/Extract/job1/s.mrcs", data)
    text = "data_\nloop_\n_rlnImageName\n_rlnPixelSize\n2@Extract/job1/s.mrcs 2.0\n"
    (tmp_path / "proj/Refine3D/job2/p.star").write_text(text)
    p = load_particles(tmp_path / "proj/Refine3D/job2/p.star")  # project folder = grandparent
    np.testing.assert_array_equal(p.images([0]), data[[1]])
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere/p.star").write_text(text)
    with pytest.raises(InputError, match="--datadir"):
        load_particles(tmp_path / "elsewhere/p.star").images([0])
    p = load_particles(tmp_path / "elsewhere/p.star", datadir=str(tmp_path / "proj"))
    np.testing.assert_array_equal(p.images([0]), data[[1]])


def test_stack_found_by_file_name_alone_is_logged(tmp_path, caplog):
    """A stack bound by its base name in another folder than the image name says is a guess: one
    warning names the STAR file and the file used."""
    data = np.random.default_rng(5).standard_normal((2, 6, 6)).astype(np.float32)
    _write_stack(tmp_path / "s.mrcs", data)
    (tmp_path / "p.star").write_text("data_\nloop_\n_rlnImageName\n_rlnPixelSize\n2@Extract/job9/s.mrcs 2.0\n")
    with caplog.at_level("WARNING", logger="cryoai.data.particles"):
        p = load_particles(tmp_path / "p.star")
    np.testing.assert_array_equal(p.images([0]), data[[1]])
    lines = [r.getMessage() for r in caplog.records if "same name" in r.getMessage()]
    assert len(lines) == 1 and str(tmp_path / "p.star") in lines[0] and str(tmp_path / "s.mrcs") in lines[0]
    assert any("same name" in note for note in p.notes)
    caplog.clear()
    (tmp_path / "Extract/job9").mkdir(parents=True)
    _write_stack(tmp_path / "Extract/job9/s.mrcs", data)
    with caplog.at_level("WARNING", logger="cryoai.data.particles"):
        assert load_particles(tmp_path / "p.star").notes == []  # found where the name points: nothing to say
    assert not caplog.records


@pytest.mark.parametrize("header, said", [(2.01, "under 1 %"), (2.5, "25 %"), (2.0, None), (0.0, None), (1.0, None)])
def test_stack_header_pixel_size_mismatch_is_noted(tmp_path, caplog, header, said):
    """The metadata's pixel size is used; a stack header that says otherwise is named in one line."""
    with mrcfile.new(tmp_path / "s.mrcs") as m:
        m.set_data(np.zeros((2, 6, 6), np.float32))
        m.voxel_size = header
    (tmp_path / "p.star").write_text("data_\nloop_\n_rlnImageName\n_rlnPixelSize\n1@s.mrcs 2.0\n")
    with caplog.at_level("WARNING", logger="cryoai.data.particles"):
        p = load_particles(tmp_path / "p.star")
    assert p.apix == 2.0
    lines = [r.getMessage() for r in caplog.records if "stack header" in r.getMessage()]
    if said is None:
        assert lines == []
    else:
        assert len(lines) == 1 and said in lines[0] and "2 Å in the metadata" in lines[0]
        assert f"{header:.5g} Å in the stack header" in lines[0] and "using the metadata's 2 Å" in lines[0]
    assert load_particles(tmp_path / "p.star", apix=2.0).notes == []  # --apix chose: nothing to reconcile
