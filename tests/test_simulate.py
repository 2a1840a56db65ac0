"""The simulator (``cryoai simulate``) against independent checks: the files read back with
``mrcfile``/``starfile``, the SNR measured from the written images, images re-derived from the
STAR's poses (Fourier-slice render, and a numpy real-space projection), reproducibility, the
placement and axis order of a map made from an atomic model, resampling of a Gaussian, and
one-line errors for bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from helpers import SHARED_DATA as DATA
from helpers import correlation
from cryoai.cli.main import main as cli
from cryoai.geometry.rotations import euler_to_matrix
from cryoai.physics.ctf import CTFParams
from cryoai.physics.image_model import render_images
from cryoai.physics.slicing import fourier_map
from cryoai.simulate import resample_map

starfile = pytest.importorskip("starfile")

ADK = DATA / "maps_models" / "adk_open_4AKE.pdb"


def simulate(out: Path, *extra: str) -> Path:
    rc = cli(["simulate", "--box", "32", "--apix", "4", "-o", str(out), *extra])
    assert rc == 0
    return out


def read(out: Path):
    """(images float64, truth map, stack voxel size, truth voxel size, optics, particles)."""
    with mrcfile.open(out / "particles.mrcs") as m:
        images, stack_apix, dtype = np.asarray(m.data, dtype=np.float64), float(m.voxel_size.x), m.data.dtype
    with mrcfile.open(out / "truth.mrc") as m:
        truth, truth_apix = np.asarray(m.data, dtype=np.float32).copy(), float(m.voxel_size.x)
    star = starfile.read(out / "particles.star")
    return {"images": images, "dtype": dtype, "truth": truth, "stack_apix": stack_apix,
            "truth_apix": truth_apix, "optics": star["optics"], "particles": star["particles"]}


def clean_render(sim: dict) -> np.ndarray:
    """The noise-free images re-made from truth.mrc and the STAR's angles, origins and CTF."""
    p, optics = sim["particles"], sim["optics"]
    apix = float(optics["rlnImagePixelSize"][0])
    A = euler_to_matrix(p["rlnAngleRot"].to_numpy(float), p["rlnAngleTilt"].to_numpy(float),
                        p["rlnAnglePsi"].to_numpy(float))
    origins = p[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(float)
    ctf_params = None
    if "rlnDefocusU" in p:
        n = len(p)
        ctf_params = CTFParams(
            defocus_u_A=p["rlnDefocusU"].to_numpy(float), defocus_v_A=p["rlnDefocusV"].to_numpy(float),
            defocus_angle_deg=p["rlnDefocusAngle"].to_numpy(float),
            voltage_kV=np.full(n, float(optics["rlnVoltage"][0])),
            cs_mm=np.full(n, float(optics["rlnSphericalAberration"][0])),
            amp_contrast=np.full(n, float(optics["rlnAmplitudeContrast"][0])),
            phase_shift_deg=p["rlnPhaseShift"].to_numpy(float) if "rlnPhaseShift" in p else np.zeros(n),
            bfactor_A2=np.zeros(n)).to_torch(torch.float64)
    box = sim["images"].shape[-1]
    return render_images(fourier_map(torch.from_numpy(sim["truth"])), torch.from_numpy(A), box, apix,
                         ctf_params, torch.from_numpy(origins)).numpy().astype(np.float64)


def trilinear(vol: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of vol[z, y, x] at points (..., 3) = (x, y, z) voxel indices; 0 outside."""
    L = vol.shape[0]
    base = np.floor(pts).astype(int)
    out = np.zeros(pts.shape[:-1])
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                i = base + np.array([dx, dy, dz])
                w = np.prod(1 - np.abs(pts - i), axis=-1)
                inside = np.all((i >= 0) & (i < L), axis=-1)
                i = np.clip(i, 0, L - 1)
                out += np.where(inside, w * vol[i[..., 2], i[..., 1], i[..., 0]], 0.0)
    return out


def real_space_projection(vol: np.ndarray, A: np.ndarray, origin_px: np.ndarray) -> np.ndarray:
    """P(x, y) = Σ_z V(Aᵀ·[x + o_x, y + o_y, z]) (particle centred at image centre − origin),
    z sampled every half voxel."""
    L = vol.shape[0]
    c = L // 2
    g = np.arange(L) - c
    Z, Y, X = np.meshgrid(np.arange(-c, c, 0.5), g, g, indexing="ij")
    pts = np.stack([X + origin_px[0], Y + origin_px[1], Z], -1) @ A + c
    return trilinear(vol.astype(np.float64), pts).sum(0) * 0.5



@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> dict:
    out = simulate(tmp_path_factory.mktemp("sim") / "snr1", "--n", "64", "--snr", "1", "--shift-std-A", "4")
    return read(out)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict:
    out = simulate(tmp_path_factory.mktemp("sim") / "inf", "--n", "12", "--snr", "inf", "--shift-std-A", "4", "--seed", "3")
    return read(out)


def test_written_files(noisy):
    """particles.mrcs is 64×32×32 float32 at 4 Å; truth.mrc at 4 Å; STAR is RELION 3.1 (optics +
    particles) with angles, origins in Å and CTF columns, image names 1-based into the stack."""
    assert noisy["images"].shape == (64, 32, 32) and noisy["dtype"] == np.float32
    assert noisy["stack_apix"] == pytest.approx(4.0) and noisy["truth_apix"] == pytest.approx(4.0)
    assert noisy["truth"].shape == (32, 32, 32)
    optics, p = noisy["optics"], noisy["particles"]
    assert float(optics["rlnImagePixelSize"][0]) == pytest.approx(4.0)
    assert int(optics["rlnImageSize"][0]) == 32
    for column in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnOpticsGroup"):
        assert column in optics
    for column in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst",
                   "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnOpticsGroup", "rlnImageName"):
        assert column in p
    assert list(p["rlnImageName"]) == [f"{i:06d}@particles.mrcs" for i in range(1, 65)]
    assert np.all((p["rlnAngleTilt"] >= 0) & (p["rlnAngleTilt"] <= 180))
    assert np.all(p["rlnDefocusU"] >= p["rlnDefocusV"])
    shifts = p[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy()
    assert 2.5 < shifts.std() < 5.5  # --shift-std-A 4


def test_measured_snr(noisy):
    """SNR = mean clean-image variance / noise variance, with the noise = image − clean re-render: ≈ 1 (±15%)."""
    signal = clean_render(noisy)
    noise = noisy["images"] - signal
    snr = signal.var(axis=(1, 2)).mean() / noise.var()
    assert snr == pytest.approx(1.0, rel=0.15)
    assert abs(noise.mean()) < 0.05 * noise.std()


def test_snr_inf_images_equal_render_at_star_poses(clean):
    """Without noise image i equals the render of truth.mrc at the STAR's pose, origin and CTF
    of row i (STAR angles ↔ images consistency), and not at another row's."""
    expected = clean_render(clean)
    images = clean["images"]
    scale = np.abs(expected).max()
    np.testing.assert_allclose(images, expected, atol=1e-3 * scale)
    assert np.abs(images[0] - expected[1]).max() > 0.1 * scale


def test_no_ctf_images_are_real_space_projections(tmp_path):
    """--no-ctf writes no defocus columns, and each image is the numpy real-space projection of
    truth.mrc at the STAR's pose and origin (corr > 0.99)."""
    sim = read(simulate(tmp_path / "noctf", "--n", "6", "--no-ctf", "--shift-std-A", "6", "--seed", "5"))
    p = sim["particles"]
    assert not any(c in p for c in ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"))
    A = euler_to_matrix(p["rlnAngleRot"].to_numpy(float), p["rlnAngleTilt"].to_numpy(float),
                        p["rlnAnglePsi"].to_numpy(float))
    origins_px = p[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(float) / 4.0
    assert np.abs(origins_px).max() > 0.5
    for img, Ai, o in zip(sim["images"], A, origins_px):
        projection = real_space_projection(sim["truth"], Ai, o)
        assert correlation(img, projection) > 0.99
        assert np.abs(img - projection).max() < 0.1 * projection.max()
    np.testing.assert_allclose(sim["images"], clean_render(sim), atol=1e-3 * np.abs(sim["images"]).max())


def test_same_seed_same_files(tmp_path):
    """The same seed gives identical files (bit-identical data and MRC headers, identical STAR text),
    except the creation-time stamps that mrcfile (header labels) and starfile (a comment) write;
    another seed gives other images."""

    def content(out: Path) -> dict:
        star = [line for line in (out / "particles.star").read_text().splitlines() if not line.startswith("#")]
        result = {"star": star}
        for name in ("particles.mrcs", "truth.mrc"):
            with mrcfile.open(out / name) as m:
                header = m.header.copy()
                header["label"] = b""  # "Created by mrcfile.py <date time>"
                result[name] = (header.tobytes(), np.asarray(m.data).tobytes())
        return result

    args = ("--n", "8", "--snr", "2", "--shift-std-A", "3", "--seed", "9")
    a, b = content(simulate(tmp_path / "a", *args)), content(simulate(tmp_path / "b", *args))
    for key in a:
        assert a[key] == b[key], key
    c = content(simulate(tmp_path / "c", "--n", "8", "--snr", "2", "--shift-std-A", "3", "--seed", "10"))
    assert a["particles.mrcs"][1] != c["particles.mrcs"][1]


@pytest.mark.skipif(not ADK.is_file(), reason="shared/data/maps_models/adk_open_4AKE.pdb absent")
def test_model_map_centred_with_axes_in_order(tmp_path):
    """--model 4AKE: the map's centre of mass is within 1 voxel of voxel L//2, and its spread along
    each array axis (z, y, x) matches the atoms' spread along z, y, x (x is distinctly narrower)."""
    gemmi = pytest.importorskip("gemmi")
    out = tmp_path / "adk"
    assert cli(["simulate", "--model", str(ADK), "--box", "48", "--apix", "2.5", "--n", "2", "-o", str(out)]) == 0
    with mrcfile.open(out / "truth.mrc") as m:
        vol, apix = np.clip(np.asarray(m.data, dtype=np.float64), 0, None), float(m.voxel_size.x)
    assert vol.shape == (48, 48, 48) and apix == pytest.approx(2.5)
    idx = np.arange(48)
    com, spread = [], []
    for axis in range(3):  # array axes z, y, x
        profile = vol.sum(axis=tuple(a for a in range(3) if a != axis))
        mean = (profile * idx).sum() / profile.sum()
        com.append(mean)
        spread.append(np.sqrt((profile * (idx - mean) ** 2).sum() / profile.sum()) * apix)
    np.testing.assert_allclose(com, 24.0, atol=1.0)
    st = gemmi.read_structure(str(ADK))
    st.remove_hydrogens()
    xyz = np.array([a.pos.tolist() for ch in st[0] for res in ch for a in res])
    atom_spread_zyx = xyz.std(axis=0)[::-1]
    np.testing.assert_allclose(spread, atom_spread_zyx, rtol=0.1)


def test_resample_map_keeps_physical_position():
    """A Gaussian at (6, −4, 2) Å from the centre, 48³ at 2 Å, resampled to 24³ at 4 Å, is the
    same Gaussian sampled on the new grid (and for an odd output box too)."""
    centre, sigma = np.array([6.0, -4.0, 2.0]), 5.0

    def gaussian(box, apix):
        g = (np.arange(box) - box // 2) * apix
        Z, Y, X = np.meshgrid(g, g, g, indexing="ij")
        return np.exp(-((X - centre[0]) ** 2 + (Y - centre[1]) ** 2 + (Z - centre[2]) ** 2) / (2 * sigma**2))

    source = gaussian(48, 2.0).astype(np.float32)
    for box, apix in ((24, 4.0), (25, 4.0), (40, 2.0)):
        out = resample_map(source, 2.0, box, apix)
        expected = gaussian(box, apix)
        assert out.shape == (box,) * 3
        assert correlation(out, expected) > 0.999
        np.testing.assert_allclose(out.max(), expected.max(), rtol=0.05)


def test_map_input_via_cli(tmp_path):
    """--map reads an MRC, resamples it to --box/--apix and writes it as truth.mrc."""
    g = (np.arange(40) - 20) * 3.0
    Z, Y, X = np.meshgrid(g, g, g, indexing="ij")
    vol = np.exp(-((X - 9) ** 2 + Y**2 + Z**2) / (2 * 6.0**2)).astype(np.float32)
    with mrcfile.new(tmp_path / "in.mrc") as m:
        m.set_data(vol)
        m.voxel_size = 3.0
    sim = read(simulate(tmp_path / "out", "--map", str(tmp_path / "in.mrc"), "--n", "2", "--no-ctf"))
    truth = sim["truth"]
    assert truth.shape == (32, 32, 32)
    z, y, x = np.unravel_index(np.argmax(truth), truth.shape)
    assert (z, y, x) == (16, 16, 16 + 2)  # 9 Å right of centre at 4 Å/px ≈ 2.25 voxels


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if "simulate:" not in line]  # a progress bar, if any
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert "Traceback" not in err[0]
    return err[0]


def test_bad_map_path(tmp_path, capsys):
    """A missing --map gives exit code 2 and one error line naming the file."""
    rc = cli(["simulate", "--map", str(tmp_path / "missing.mrc"), "--n", "2", "--box", "16", "-o", str(tmp_path / "o")])
    assert rc == 2
    assert "missing.mrc" in one_error_line(capsys)


def test_unwritable_output(tmp_path, capsys):
    """An -o that cannot be a folder (under a regular file) gives exit code 2 and one error line."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    rc = cli(["simulate", "--n", "2", "--box", "16", "-o", str(blocker / "sub")])
    assert rc == 2
    one_error_line(capsys)
    rc = cli(["simulate", "--n", "2", "--box", "16", "-o", str(blocker)])
    assert rc == 2
    one_error_line(capsys)


# --- regressions: bugs found and fixed ---

@pytest.mark.skipif(not ADK.is_file(), reason="shared/data/maps_models/adk_open_4AKE.pdb absent")
def test_model_map_is_band_limited_to_nyquist():
    """A map from an atomic model holds (almost) no power outside |k| ≤ ½ cycle/voxel (as model_to_map documents)."""
    from cryoai.simulate import model_to_map

    vol = model_to_map(ADK, 48, 2.5).astype(np.float64)
    power = np.abs(np.fft.fftshift(np.fft.fftn(vol))) ** 2
    g = (np.arange(48) - 24) / 48
    Z, Y, X = np.meshgrid(g, g, g, indexing="ij")
    outside = power[np.sqrt(X**2 + Y**2 + Z**2) > 0.5].sum() / power.sum()
    assert outside < 0.01, f"{outside:.0%} of the power beyond Nyquist"


def test_non_numeric_snr_is_an_input_error(tmp_path, capsys):
    """--snr abc gives exit code 2 and an error line, no traceback."""
    try:
        rc = cli(["simulate", "--snr", "abc", "--n", "2", "--box", "16", "-o", str(tmp_path / "o")])
    except SystemExit as e:  # argparse's own error exit would be fine too
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert "error" in err and "snr" in err.lower() and "Traceback" not in err


def test_non_mrc_map_gives_only_the_error_line(tmp_path, capsys):
    """--map pointing at a text file: exit code 2, one error line and no warnings."""
    bad = tmp_path / "model.pdb"
    bad.write_text("ATOM      1  CA  ALA A   1       0.000   0.000   0.000  1.00 20.00           C\n" * 50)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = cli(["simulate", "--map", str(bad), "--n", "2", "--box", "16", "-o", str(tmp_path / "o")])
    assert rc == 2
    one_error_line(capsys)
    assert not caught, [str(w.message) for w in caught]
