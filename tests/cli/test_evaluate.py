"""``cryoai fsc``, ``cryoai evaluate`` and ``cryoai flip-hand`` through the CLI entry point."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from cryoai.cli.main import main
from cryoai.eval.align import flip_hand, transform_map
from cryoai.geometry.rotations import euler_to_matrix, matrix_to_euler, random_rotations
from cryoai.io.mrc import read_map, write_map

J = np.diag([1.0, 1.0, -1.0])
G_TRUE = euler_to_matrix(30, 60, 120)


pytestmark = pytest.mark.usefixtures("one_thread")


def blob_map(L: int) -> np.ndarray:
    """Asymmetric sum of Gaussian blobs, centre at voxel L//2."""
    blobs = [((5, 0, 0), 2.5, 1.0), ((-3, 5, 1), 1.8, 0.8), ((0, -4, 5), 1.5, 1.2), ((-2, -3, -6), 2.2, 0.6)]
    i = np.arange(L) - L // 2
    z, y, x = np.meshgrid(i, i, i, indexing="ij")
    return sum(a * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * s**2))
               for (cx, cy, cz), s, a in blobs).astype(np.float32)


def write_poses(path, names, A, origins_A, apix=2.0, box=32):
    rot, tilt, psi = matrix_to_euler(A)
    particles = pd.DataFrame({"rlnImageName": names, "rlnAngleRot": rot, "rlnAngleTilt": tilt, "rlnAnglePsi": psi,
                              "rlnOriginXAngst": origins_A[:, 0], "rlnOriginYAngst": origins_A[:, 1],
                              "rlnOpticsGroup": 1})
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], "rlnImagePixelSize": [apix],
                           "rlnImageSize": [box], "rlnImageDimensionality": [2]})
    starfile.write({"optics": optics, "particles": particles}, path, overwrite=True)


def test_flip_hand_cli_twice_is_identity_and_keeps_voxel_size(tmp_path, capsys):
    L = 32
    vol = np.random.default_rng(0).standard_normal((L, L, L)).astype(np.float32)
    vol[L // 2 + 5, 3, 4] = 50.0  # hot voxel at (x, y, z) = (4, 3, L/2 + 5)
    write_map(tmp_path / "in.mrc", vol, 1.37)
    assert main(["flip-hand", str(tmp_path / "in.mrc"), str(tmp_path / "m.mrc")]) == 0
    assert main(["flip-hand", str(tmp_path / "m.mrc"), str(tmp_path / "mm.mrc")]) == 0
    m, apix = read_map(tmp_path / "m.mrc")
    assert apix == pytest.approx(1.37)
    assert m[(L - (L // 2 + 5)) % L, 3, 4] == 50.0  # z → L − z
    np.testing.assert_array_equal(m[L // 2], vol[L // 2])  # the centre plane stays
    mm, apix2 = read_map(tmp_path / "mm.mrc")
    np.testing.assert_array_equal(mm, vol)
    assert apix2 == pytest.approx(1.37)
    with mrcfile.open(tmp_path / "m.mrc") as f:
        assert float(f.voxel_size.x) == pytest.approx(1.37)
    assert "wrote" in capsys.readouterr().out


def test_fsc_cli_json_with_alignment_and_files(tmp_path, capsys):
    L = 32
    vol = blob_map(L)
    mov = flip_hand(transform_map(vol, G_TRUE.T, shift=(1.0, 0.0, -2.0)))
    mov = mov + np.random.default_rng(1).normal(scale=0.02, size=mov.shape).astype(np.float32)
    write_map(tmp_path / "a.mrc", vol, 2.0)
    write_map(tmp_path / "b.mrc", mov, 2.0)
    prefix = tmp_path / "out" / "fsc"
    rc = main(["fsc", str(tmp_path / "a.mrc"), str(tmp_path / "b.mrc"), "--align", "--mask", "sphere",
               "--json", "-o", str(prefix)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hand"] == "flipped"
    assert np.asarray(out["rotation"]).shape == (3, 3) and len(out["shift_px"]) == 3
    for key in ("res_0.5_A", "res_0.143_A", "res_0.5_px", "res_0.143_px"):
        assert out[key] is not None
    assert out["res_0.5_A"] == pytest.approx(2.0 * out["res_0.5_px"])
    assert out["res_0.5_px"] < 5.0 and out["res_0.143_A"] <= out["res_0.5_A"]
    table = starfile.read(f"{prefix}.txt")
    assert list(table.columns) == ["rlnSpectralIndex", "rlnResolution", "rlnAngstromResolution",
                                   "rlnFourierShellCorrelation"]
    assert len(table) == L // 2 + 1 and table["rlnResolution"].iloc[-1] == pytest.approx(0.25)
    assert (tmp_path / "out" / "fsc.png").stat().st_size > 1000
    aligned, apix = read_map(tmp_path / "out" / "fsc_aligned.mrc")
    assert apix == pytest.approx(2.0) and np.corrcoef(aligned.ravel(), vol.ravel())[0, 1] > 0.95
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporaries


def test_fsc_cli_text_without_alignment(tmp_path, capsys):
    vol = blob_map(32)
    write_map(tmp_path / "a.mrc", vol, 1.5)
    rc = main(["fsc", str(tmp_path / "a.mrc"), str(tmp_path / "a.mrc"), "-o", str(tmp_path / "self")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "FSC = 0.5:   3.00 Å (2.00 px)" in text and "FSC = 0.143: 3.00 Å" in text


@pytest.mark.parametrize("other", ["box", "apix"])
def test_fsc_cli_mismatched_maps_exit_2_one_line(tmp_path, capsys, other):
    write_map(tmp_path / "a.mrc", blob_map(32), 2.0)
    if other == "box":
        write_map(tmp_path / "b.mrc", blob_map(36), 2.0)
    else:
        write_map(tmp_path / "b.mrc", blob_map(32), 2.5)
    rc = main(["fsc", str(tmp_path / "a.mrc"), str(tmp_path / "b.mrc"), "-o", str(tmp_path / "x")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert "a.mrc" in err and "b.mrc" in err
    assert not (tmp_path / "x.txt").exists()


def _pose_files(tmp_path, n=300, outlier_frac=0.2, seed=5):
    """Truth poses and predictions in a rotated, mirrored frame (noise 2°, outliers), shuffled."""
    rng = np.random.default_rng(seed)
    truth = random_rotations(n, rng)
    names = np.array([f"{i + 1:06d}@Particles/stack.mrcs" for i in range(n)])
    origins = rng.normal(scale=4.0, size=(n, 2))
    v = rng.normal(scale=np.deg2rad(2.0), size=(n, 3))
    noise = np.stack([euler_to_matrix(*np.rad2deg(x)) for x in v])  # small rotations
    pred = J @ (noise @ truth @ G_TRUE) @ J  # registered: J·pred·J·Gᵀ = noise·truth
    bad = rng.random(n) < outlier_frac
    pred[bad] = random_rotations(int(bad.sum()), rng)
    write_poses(tmp_path / "truth.star", names, truth, origins)
    order = rng.permutation(n)[: n - 20]  # shuffled, 20 particles missing
    pred_names = np.array([f"{i + 1}@/elsewhere/stack.mrcs" for i in range(n)])  # other path spelling
    write_poses(tmp_path / "pred.star", pred_names[order], pred[order], origins[order] + [1.0, 0.0])
    return n - 20


def test_evaluate_cli_json(tmp_path, capsys):
    n = _pose_files(tmp_path)
    rc = main(["evaluate", str(tmp_path / "pred.star"), "--truth", str(tmp_path / "truth.star"), "--json"])
    assert rc == 0
    m = json.loads(capsys.readouterr().out)
    for key in ("rot_median_sqfrob", "rot_median_deg", "rot_mean_deg", "frac_within_5deg", "frac_within_10deg",
                "frac_within_20deg", "trans_median_px", "trans_median_A", "hand"):
        assert key in m
    assert m["n_particles"] == n
    assert m["hand"] == "flipped"
    assert m["rot_median_deg"] < 5.0 and 0.7 < m["frac_within_20deg"] < 0.9
    assert m["trans_median_A"] == pytest.approx(1.0, rel=0.05) and m["trans_median_px"] == pytest.approx(0.5, rel=0.05)


def test_evaluate_cli_with_maps_text(tmp_path, capsys):
    _pose_files(tmp_path)
    vol = blob_map(32)
    write_map(tmp_path / "truth.mrc", vol, 2.0)
    # the predicted map in the predictions' frame: flip(pred_map) rotated by G is the truth
    write_map(tmp_path / "pred.mrc", flip_hand(transform_map(vol, G_TRUE.T)), 2.0)
    rc = main(["evaluate", str(tmp_path / "pred.star"), "--truth", str(tmp_path / "truth.star"),
               "--map", str(tmp_path / "pred.mrc"), "--truth-map", str(tmp_path / "truth.mrc"), "--json"])
    assert rc == 0
    m = json.loads(capsys.readouterr().out)
    assert m["map_hand"] == "flipped" == m["hand"]
    assert m["map_vs_pose_rotation_deg"] < 2.0
    assert m["res_0.5_A"] < 2.0 * 4
    rc = main(["evaluate", str(tmp_path / "pred.star"), "--truth", str(tmp_path / "truth.star")])
    text = capsys.readouterr().out
    assert rc == 0 and "hand flipped" in text and "within 5° / 10° / 20°" in text


def test_evaluate_cli_errors_are_one_line(tmp_path, capsys):
    _pose_files(tmp_path)
    write_poses(tmp_path / "other.star", np.array(["1@zzz.mrcs"]), np.eye(3)[None], np.zeros((1, 2)))
    rc = main(["evaluate", str(tmp_path / "other.star"), "--truth", str(tmp_path / "truth.star")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "share no particle" in err
    rc = main(["evaluate", str(tmp_path / "pred.star"), "--truth", str(tmp_path / "truth.star"),
               "--map", str(tmp_path / "x.mrc")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "--truth-map" in err


def test_evaluate_rejects_an_unknown_point_group(tmp_path, capsys):
    from cryoai.cli.main import main as cli

    star = tmp_path / "p.star"
    star.write_text("data_\nloop_\n_rlnImageName\n1@x.mrcs\n")
    assert cli(["evaluate", str(star), "--truth", str(star), "--symmetry", "I5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "symmetry 'I5'" in err[0] and "Cn or Dn" in err[0]
