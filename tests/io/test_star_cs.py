"""Round trips: STAR 3.0 → 3.1, 3.1 → 3.1, .cs → STAR, .cs → .cs, STAR → .cs, and pose.pkl
against cryoDRGN's own pickles. Written files are also re-read with starfile / numpy directly."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import starfile

from helpers import SHARED_DATA as DATA
from cryoai.data.particles import load_particles, write_particles_cs, write_particles_star, write_pose_pkl
from cryoai.geometry.rotations import geodesic_distance_deg, random_rotations

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="shared test data absent")
ASPIRE = DATA / "real_aspire_80S_17ptcl"


def new_poses(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return random_rotations(n, rng), rng.uniform(-20, 20, (n, 2))


def assert_same_poses(p, rotations, origins):
    assert geodesic_distance_deg(p.rotations, rotations).max() < 1e-4
    np.testing.assert_allclose(p.origins_A, origins, atol=1e-5)


def test_star30_to_31_keeps_poses_ctf_apix_names(tmp_path):
    src = load_particles(ASPIRE / "sample_particles_relion30.star")
    out = tmp_path / "particles.star"
    write_particles_star(out, src, src.rotations, src.origins_A, {"rlnRandomSubset": np.arange(17) % 2 + 1})
    back = load_particles(out, datadir=str(ASPIRE))
    assert_same_poses(back, src.rotations, src.origins_A)
    np.testing.assert_allclose(back.ctf.as_array(), src.ctf.as_array(), rtol=1e-6)
    assert back.apix == pytest.approx(src.apix, rel=1e-6) and back.box == 200
    assert back.table["rlnImageName"].tolist() == src.table["rlnImageName"].tolist()
    np.testing.assert_array_equal(back.images([4, 16]), src.images([4, 16]))
    # the file itself, read by starfile: RELION 3.1 layout, 2 optics groups (300 and 200 kV)
    blocks = starfile.read(out, always_dict=True)
    optics, table = blocks["optics"], blocks["particles"]
    assert sorted(optics["rlnVoltage"]) == [200.0, 300.0]
    for column in ("rlnOpticsGroup", "rlnOpticsGroupName", "rlnImagePixelSize", "rlnImageSize",
                   "rlnImageDimensionality", "rlnSphericalAberration", "rlnAmplitudeContrast"):
        assert column in optics
    assert optics["rlnOpticsGroup"].dtype.kind == "i" and table["rlnOpticsGroup"].dtype.kind == "i"
    assert "rlnOriginX" not in table and "rlnOriginXAngst" in table and "rlnVoltage" not in table
    np.testing.assert_array_equal(table["rlnRandomSubset"], np.arange(17) % 2 + 1)
    voltage = table["rlnOpticsGroup"].map(optics.set_index("rlnOpticsGroup")["rlnVoltage"])
    np.testing.assert_array_equal(voltage, src.table["rlnVoltage"])


def test_star31_to_31_keeps_every_column_and_new_poses(tmp_path):
    src = load_particles(DATA / "real_relion31_5ptcl/relion31.star")
    rotations, origins = new_poses(len(src))
    out = tmp_path / "p.star"
    write_particles_star(out, src, rotations, origins)
    back = load_particles(out, datadir=str(DATA / "real_relion31_5ptcl"))
    assert_same_poses(back, rotations, origins)
    pose_columns = {"rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"}
    assert set(src.table.columns) <= set(back.table.columns)
    for column in set(src.table.columns) - pose_columns:
        assert back.table[column].tolist() == src.table[column].tolist(), column
    assert back.optics.to_dict() == src.optics.to_dict()
    np.testing.assert_array_equal(back.images([0, 4]), src.images([0, 4]))


def test_cs_to_star_and_cs_to_cs(tmp_path):
    src = load_particles(DATA / "real_empiar10076_7ptcl/empiar_10076_7.cs")
    rotations, origins = new_poses(len(src), seed=1)
    write_particles_star(tmp_path / "a.star", src, rotations, origins)
    star = load_particles(tmp_path / "a.star")
    assert_same_poses(star, rotations, origins)
    np.testing.assert_allclose(star.ctf.as_array(), src.ctf.as_array(), rtol=1e-6, atol=1e-5)
    assert star.apix == pytest.approx(src.apix, rel=1e-6)
    np.testing.assert_array_equal(star.images(np.arange(7)), src.images(np.arange(7)))

    write_particles_cs(tmp_path / "a.cs", src, rotations, origins)
    cs = load_particles(tmp_path / "a.cs", datadir=str(src.path.parent))
    assert_same_poses(cs, rotations, origins)
    original, written = np.load(src.path), np.load(tmp_path / "a.cs")
    for name in original.dtype.names:  # every input field passes through unchanged
        np.testing.assert_array_equal(written[name], original[name], err_msg=name)
    np.testing.assert_array_equal(cs.images([3]), src.images([3]))


def test_cs_with_poses_round_trips_and_matches_pickle(tmp_path):
    folder = DATA / "metadata_conversion"
    src = load_particles(folder / "cryosparc_P12_J24_001_particles.cs")
    write_particles_cs(tmp_path / "b.cs", src, src.rotations, src.origins_A)
    original, written = np.load(src.path), np.load(tmp_path / "b.cs")
    assert set(original.dtype.names) == set(written.dtype.names)
    np.testing.assert_allclose(written["alignments3D/shift"], original["alignments3D/shift"], atol=1e-5)
    assert geodesic_distance_deg(load_particles(tmp_path / "b.cs").rotations, src.rotations).max() < 1e-4
    write_pose_pkl(tmp_path / "pose.pkl", src.rotations, src.origins_A, src.box, src.apix)
    R, t = pickle.load(open(tmp_path / "pose.pkl", "rb"))
    R_ref, t_ref = pickle.load(open(folder / "pose.cs.pkl", "rb"))
    np.testing.assert_allclose(R, R_ref, atol=1e-5)
    np.testing.assert_allclose(t, t_ref, atol=1e-6)


def test_pose_pkl_matches_cryodrgn_for_star(tmp_path):
    folder = DATA / "metadata_conversion"
    src = load_particles(folder / "FinalRefinement-OriginalParticles-PfCRT.star")
    write_pose_pkl(tmp_path / "pose.pkl", src.rotations, src.origins_A, 300, src.apix)
    R, t = pickle.load(open(tmp_path / "pose.pkl", "rb"))
    R_ref, t_ref = pickle.load(open(folder / "pose.star.pkl", "rb"))
    np.testing.assert_allclose(R, R_ref, atol=1e-6)
    np.testing.assert_allclose(t, t_ref, atol=1e-7)


def test_star_to_cs_round_trip(tmp_path):
    src = load_particles(ASPIRE / "sample_particles_relion31.star")
    write_particles_cs(tmp_path / "c.cs", src, src.rotations, src.origins_A)
    cs = load_particles(tmp_path / "c.cs")
    assert_same_poses(cs, src.rotations, src.origins_A)
    np.testing.assert_allclose(cs.ctf.as_array(), src.ctf.as_array(), rtol=1e-6, atol=1e-4)
    assert (len(cs), cs.box) == (17, 200) and cs.apix == pytest.approx(1.4)
    np.testing.assert_array_equal(cs.images([0, 9]), src.images([0, 9]))


def test_bare_stack_to_star(tmp_path):
    stack = DATA / "real_empiar10076_7ptcl/empiar_10076_7.mrc"
    src = load_particles(stack, apix=1.31)
    rotations, origins = new_poses(7, seed=2)
    write_particles_star(tmp_path / "d.star", src, rotations, origins)
    back = load_particles(tmp_path / "d.star")
    assert back.apix == 1.31 and back.box == 320 and back.ctf is None
    assert_same_poses(back, rotations, origins)
    np.testing.assert_array_equal(back.images([6, 0]), src.images([6, 0]))


def test_one_set_of_ctf_column_names():
    """The STAR and .cs name maps cover exactly the CTF record's fields; the optics fields are among them."""
    from cryoai.io.columns import CS_CTF, CS_CTF_RADIANS, STAR_CTF, STAR_OPTICS_CTF
    from cryoai.physics.ctf import CTF_COLUMNS

    assert tuple(STAR_CTF) == tuple(CS_CTF) == CTF_COLUMNS
    assert set(STAR_OPTICS_CTF) <= set(CTF_COLUMNS) and set(CS_CTF_RADIANS) <= set(CTF_COLUMNS)
