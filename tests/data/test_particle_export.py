"""From a cryoSPARC ``.cs`` input, ``train`` and ``predict`` write the RELION STAR and a ``.cs``
beside it whose ``alignments3D`` poses are the STAR's, read by cryosparc-tools and by cryoai.

The poses are compared through formulas written out here (Rodrigues; RELION's Euler matrix
from shared/CONVENTIONS.md), not through cryoai's converters.
"""

from __future__ import annotations

import numpy as np
import pytest
import starfile

from helpers import simulate_tiny, tiny_config
from cryoai.cli.main import main as cli
from cryoai.data.particles import load_particles, write_particles_cs
from cryoai.phantom import phantom_map
from cryoai.simulate import simulate
from cryoai.train.run_dir import RunDir
from cryoai.train.trainer import Trainer

Dataset = pytest.importorskip("cryosparc.dataset").Dataset


def rodrigues(v: np.ndarray) -> np.ndarray:
    """(N, 3) axis-angle vectors (rad) → (N, 3, 3) rotation matrices exp([v]×)."""
    theta = np.linalg.norm(v, axis=1)[:, None, None]
    k = v / np.maximum(theta[:, :, 0], 1e-300)
    K = np.zeros((len(v), 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    K = K - K.transpose(0, 2, 1)
    return np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K


def relion_matrix(rot: np.ndarray, tilt: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """RELION's Euler_angles2matrix (degrees), as written in shared/CONVENTIONS.md."""
    a, b, g = np.deg2rad(rot), np.deg2rad(tilt), np.deg2rad(psi)
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.stack([np.stack([cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb], -1),
                     np.stack([-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb], -1),
                     np.stack([sc, ss, cb], -1)], -2)


@pytest.fixture(scope="module")
def cs_input(tmp_path_factory):
    """120 simulated images (box 16, 8 Å/px) described by a cryoSPARC .cs (uid, blob, ctf)."""
    out = tmp_path_factory.mktemp("cs_input")
    simulate_tiny(out)
    star = load_particles(out / "particles.star")
    write_particles_cs(out / "particles.cs", star, star.rotations, star.origins_A)
    return out / "particles.cs"


def assert_cs_matches_star(cs_path, star_path, source_cs):
    """The .cs read by cryosparc-tools: every input field kept, poses and shifts equal to the STAR's."""
    ds = Dataset.load(cs_path)
    source = Dataset.load(source_cs)
    np.testing.assert_array_equal(ds["uid"], source["uid"])
    np.testing.assert_array_equal(ds["blob/path"], source["blob/path"])
    np.testing.assert_array_equal(ds["ctf/df1_A"], source["ctf/df1_A"])
    table = starfile.read(star_path)["particles"]
    A_star = relion_matrix(*(table[c].to_numpy(float) for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")))
    A_cs = rodrigues(np.asarray(ds["alignments3D/pose"], np.float64)).transpose(0, 2, 1)  # A = expmap(pose)ᵀ
    assert np.abs(A_cs - A_star).max() < 1e-5
    psize = np.asarray(ds["alignments3D/psize_A"], np.float64)
    np.testing.assert_allclose(psize, 8.0, rtol=1e-6)
    origins = table[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(float)
    np.testing.assert_allclose(np.asarray(ds["alignments3D/shift"], np.float64) * psize[:, None], origins, atol=1e-4)
    return ds


def test_train_and_predict_write_a_cs_beside_the_star(cs_input, tmp_path, capsys):
    """A tiny run on the .cs writes run/particles.cs (and `predict` OUT.cs); cryosparc-tools reads
    both and their poses are the STAR's; cryoai's reader gives back the run's rotations to 1e-5 (float32)."""
    cfg = tiny_config(final_subset=120)
    run = RunDir(tmp_path / "run", quiet=True)
    result = Trainer(load_particles(cs_input), cfg, run, progress=False).fit()
    run.close()
    assert_cs_matches_star(tmp_path / "run" / "particles.cs", tmp_path / "run" / "particles.star", cs_input)
    back = load_particles(tmp_path / "run" / "particles.cs")
    assert np.abs(back.rotations - result["rotations"]).max() < 1e-5  # .cs poses are float32
    np.testing.assert_allclose(back.origins_A, result["origins_A"], atol=1e-5)

    out = tmp_path / "predicted.star"
    assert cli(["predict", str(tmp_path / "run"), str(cs_input), "-o", str(out), "--quiet", "--no-refine"]) == 0
    assert_cs_matches_star(tmp_path / "predicted.cs", out, cs_input)
    star = load_particles(out)
    assert np.abs(load_particles(tmp_path / "predicted.cs").rotations - star.rotations).max() < 1e-5
    # -o must name the STAR: a .cs there would be written twice, the STAR lost
    assert cli(["predict", str(tmp_path / "run"), str(cs_input), "-o", str(tmp_path / "x.cs"), "--quiet"]) == 2
    assert "give the STAR file to write" in capsys.readouterr().err and not (tmp_path / "x.cs").exists()


def test_star_input_writes_no_cs(tmp_path):
    """A STAR input gets only the STAR: the .cs is for cryoSPARC users."""
    from cryoai.data.particle_export import write_particle_files

    simulate(phantom_map(16, 8.0), 8.0, 4, tmp_path, seed=2, progress=False)
    p = load_particles(tmp_path / "particles.star")
    written = write_particle_files(tmp_path / "out.star", p, p.rotations, p.origins_A)
    assert written == [tmp_path / "out.star"] and not (tmp_path / "out.cs").exists()
