"""The simulator's realistic options (``cryoai simulate --junk-fraction … --preferred-view …``),
each checked against an independent measurement of the written files: spectra measured from the
images, the noise as image minus a clean re-render, regressions against noise-free renders,
angles measured from the STAR, hand-computed envelope factors."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from helpers import SHARED_DATA as DATA
from test_simulate import clean_render, read, simulate
from cryoai.cli.main import main as cli
from cryoai.geometry.rotations import euler_to_matrix, rotations_near_view, viewing_direction
from cryoai.physics.noise import coloured_noise, ice_spectrum, pixel_variance, scaled_to_variance

starfile = pytest.importorskip("starfile")
ADK = DATA / "maps_models" / "adk_open_4AKE.pdb"


def truth(out: Path):
    return starfile.read(out / "truth.star")["particles"]


def radial_power(images: np.ndarray) -> np.ndarray:
    """Mean |F(k)|² per shell round(|k|) ≤ L//2 of the orthonormal centred 2D DFT, over images."""
    box = images.shape[-1]
    power = np.abs(np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=(-2, -1))), axes=(-2, -1))) ** 2 / box**2
    k = np.arange(box) - box // 2
    ky, kx = np.meshgrid(k, k, indexing="ij")
    shell = np.rint(np.hypot(kx, ky)).astype(int)
    mean = power.mean(0)
    return np.array([mean[shell == r].mean() for r in range(box // 2 + 1)])


def test_coloured_noise_has_the_spectrum_asked():
    """Ice noise (σ² = 2 per pixel) averaged over 4000 images of 32²: its measured radial
    spectrum is the one asked within 10 % in every shell, and its variance per pixel is 2."""
    psd = scaled_to_variance(ice_spectrum(32, 4.0), 32, 2.0)
    assert psd[0] / psd[-1] > 3  # stronger at low frequency
    noise = coloured_noise((4000, 32, 32), psd, np.random.default_rng(0)).astype(np.float64)
    np.testing.assert_allclose(radial_power(noise), psd, rtol=0.1)
    assert noise.var() == pytest.approx(2.0, rel=0.02)
    assert pixel_variance(psd, 32) == pytest.approx(2.0)


@pytest.fixture(scope="module")
def ice(tmp_path_factory) -> tuple[Path, dict]:
    out = simulate(tmp_path_factory.mktemp("sim") / "ice", "--n", "400", "--snr", "0.5", "--noise-spectrum", "ice",
                   "--shift-std-A", "3", "--seed", "2")
    return out, read(out)


def test_snr_and_spectrum_hold_with_ice_noise(ice):
    """With --noise-spectrum ice the noise (image − clean re-render) has variance signal/SNR per
    pixel (±10 %), the spectrum written to truth_noise_spectrum.txt (±10 % per shell from shell 2,
    where a shell holds enough pixels), and that spectrum falls several-fold from the centre."""
    out, sim = ice
    signal = clean_render(sim)
    noise = sim["images"] - signal
    assert signal.var(axis=(1, 2)).mean() / noise.var() == pytest.approx(0.5, rel=0.1)
    table = np.loadtxt(out / "truth_noise_spectrum.txt")
    np.testing.assert_array_equal(table[:, 0], np.arange(17))
    assert table[0, 1] / table[-1, 1] > 3
    np.testing.assert_allclose(radial_power(noise)[2:], table[2:, 1], rtol=0.1)
    assert pixel_variance(table[:, 1], 32) == pytest.approx(noise.var(), rel=0.05)


def test_white_noise_writes_no_spectrum_and_truth_has_no_junk(ice, tmp_path):
    """By default no spectrum file is written and every truth row is a particle of contrast 1."""
    out = simulate(tmp_path / "w", "--n", "4", "--snr", "1")
    assert not (out / "truth_noise_spectrum.txt").exists()
    t = truth(out)
    assert list(t["cryoaiJunkKind"]) == ["particle"] * 4 and np.all(t["rlnCtfScalefactor"] == 1.0)


@pytest.fixture(scope="module")
def junk(tmp_path_factory) -> Path:
    return simulate(tmp_path_factory.mktemp("sim") / "junk", "--n", "120", "--junk-fraction", "0.4", "--seed", "1")


def test_junk_fraction_and_kinds_recorded(junk):
    """40 % of 120 rows are junk in truth.star, of all four kinds; particles.star has the same
    rows in the same order and no truth columns a user would not have."""
    t = truth(junk)
    kinds = t["cryoaiJunkKind"].to_numpy()
    assert (kinds != "particle").sum() == 48
    assert set(kinds) == {"particle", "ice", "empty", "fragment", "neighbour"}
    p = starfile.read(junk / "particles.star")["particles"]
    assert list(p["rlnImageName"]) == list(t["rlnImageName"])
    assert not {"cryoaiJunkKind", "rlnCtfScalefactor", "rlnCtfBfactor"} & set(p.columns)


def test_junk_images_differ_from_particles_as_their_kind_says(junk):
    """Without noise: an empty pick is exactly zero; the other junk rows are not the molecule's
    render at the row's pose (correlation < 0.9, < 0.98 for a fragment) while particles are (> 0.999); a neighbour's
    density lies off-centre."""
    sim, kinds = read(junk), truth(junk)["cryoaiJunkKind"].to_numpy()
    images, expected = sim["images"], clean_render(sim)
    assert np.all(images[kinds == "empty"] == 0.0)
    corr = np.array([np.corrcoef(a.ravel(), b.ravel())[0, 1] if a.std() > 0 else 0.0 for a, b in zip(images, expected)])
    assert corr[kinds == "particle"].min() > 0.999
    assert corr[(kinds == "ice") | (kinds == "neighbour")].max() < 0.9
    assert corr[kinds == "fragment"].max() < 0.98  # a part of the map at the row's pose
    L = images.shape[-1]
    g = np.abs(np.arange(L) - L // 2)
    radius = np.maximum.outer(g, g)
    for image, kind in zip(images, kinds):
        if kind == "neighbour":  # more of the image's energy near the edge than in the centre
            assert (image[radius >= L // 4] ** 2).sum() > (image[radius < L // 4] ** 2).sum()


def test_neighbours_in_true_particles_recorded(tmp_path):
    """--neighbour-fraction 0.5 without noise: about half the (true) particles carry
    cryoaiNeighbour 1 in truth.star; those images differ from the render at their pose mostly
    near the edge, the others equal it."""
    out = simulate(tmp_path / "nb", "--n", "40", "--seed", "8", "--neighbour-fraction", "0.5")
    sim, t = read(out), truth(out)
    flag = t["cryoaiNeighbour"].to_numpy() == 1
    assert set(t["cryoaiJunkKind"]) == {"particle"} and 10 <= flag.sum() <= 30
    extra = sim["images"] - clean_render(sim)
    scale = np.abs(sim["images"]).max()
    assert np.abs(extra[~flag]).max() < 1e-3 * scale
    L = extra.shape[-1]
    g = np.abs(np.arange(L) - L // 2)
    edge = np.maximum.outer(g, g) >= L // 4
    assert np.all((extra[flag][:, edge] ** 2).sum(1) > (extra[flag][:, ~edge] ** 2).sum(1))


@pytest.mark.skipif(not ADK.is_file(), reason="shared/data/maps_models/adk_open_4AKE.pdb absent")
def test_model_fragments_are_parts_of_the_atoms():
    """A fragment of 4AKE holds 25–60 % of the molecule's mass (the sum of its map)."""
    from cryoai.simulate import model_fragments, model_to_map

    whole = model_to_map(ADK, 24, 4.0).sum()
    for part in model_fragments(ADK, 24, 4.0, 3, np.random.default_rng(0)):
        assert 0.2 * whole < part.sum() < 0.65 * whole


def test_contrast_scale_recorded_and_applied(tmp_path):
    """--contrast-sd 0.3 without noise: each image is its recorded rlnCtfScalefactor times the
    image simulated without contrast variation (regression slope, to 1e-4); the scales spread by ≈ 0.3."""
    base = read(simulate(tmp_path / "a", "--n", "40", "--seed", "4"))["images"]
    out = simulate(tmp_path / "b", "--n", "40", "--seed", "4", "--contrast-sd", "0.3")
    images, scale = read(out)["images"], truth(out)["rlnCtfScalefactor"].to_numpy()
    slope = (images * base).sum(axis=(1, 2)) / (base * base).sum(axis=(1, 2))
    np.testing.assert_allclose(slope, scale, rtol=1e-4)
    assert np.all(scale > 0) and 0.2 < scale.std() < 0.4


def test_defocus_error_spread(tmp_path):
    """--defocus-error-A 150: STAR defocus − true defocus has standard deviation ≈ 150 Å (±10 %),
    mean ≈ 0, the same for U and V (astigmatism unchanged); images made from the true defocus."""
    out = simulate(tmp_path / "d", "--n", "1000", "--box", "16", "--seed", "5", "--defocus-error-A", "150")
    p, t = starfile.read(out / "particles.star")["particles"], truth(out)
    error = (p["rlnDefocusU"] - t["rlnDefocusU"]).to_numpy()
    assert error.std() == pytest.approx(150, rel=0.1) and abs(error.mean()) < 15
    np.testing.assert_allclose(p["rlnDefocusV"] - t["rlnDefocusV"], error, atol=1e-3)
    sim = read(out)
    for column in ("rlnDefocusU", "rlnDefocusV"):
        sim["particles"][column] = t[column]
    np.testing.assert_allclose(sim["images"][:50], clean_render(sim)[:50], atol=1e-3 * np.abs(sim["images"]).max())


def test_preferred_views_concentrate(tmp_path):
    """30 % of 2000 views within 20° of (rot 40, tilt 70): the fraction within 20° measured from
    the STAR's angles is 0.3 + 0.7 · (1 − cos 20°)/2 (the uniform rest falling in the cap) ± 0.03."""
    out = simulate(tmp_path / "v", "--n", "2000", "--box", "16", "--seed", "6", "--preferred-view", "40,70",
                   "--preferred-fraction", "0.3", "--preferred-spread-deg", "20")
    p = starfile.read(out / "particles.star")["particles"]
    A = euler_to_matrix(p["rlnAngleRot"], p["rlnAngleTilt"], p["rlnAnglePsi"])
    direction = np.array([np.sin(np.deg2rad(70)) * np.cos(np.deg2rad(40)),
                          np.sin(np.deg2rad(70)) * np.sin(np.deg2rad(40)), np.cos(np.deg2rad(70))])
    angle = np.rad2deg(np.arccos(np.clip(viewing_direction(A) @ direction, -1, 1)))
    expected = 0.3 + 0.7 * (1 - np.cos(np.deg2rad(20))) / 2
    assert np.mean(angle < 20) == pytest.approx(expected, abs=0.03)


def test_rotations_near_view_stay_in_the_cap():
    """Every drawn viewing direction is within the spread; the median angle is that of a
    uniform cap, arccos(1 − (1 − cos D)/2)."""
    A = rotations_near_view(5000, -120.0, 150.0, 15.0, np.random.default_rng(0))
    d0 = viewing_direction(euler_to_matrix(-120.0, 150.0, 0.0))
    angle = np.rad2deg(np.arccos(np.clip(viewing_direction(A) @ d0, -1, 1)))
    assert angle.max() <= 15.0 + 1e-6
    assert np.median(angle) == pytest.approx(np.rad2deg(np.arccos(1 - (1 - np.cos(np.deg2rad(15))) / 2)), rel=0.03)


def test_bfactor_attenuates_by_the_hand_computed_factor(tmp_path):
    """--bfactor 80 at 4 Å/px, box 32, no noise: the image's transform is the B = 0 image's times
    exp(−B s²/4); at s = 1/8 Å⁻¹ (Nyquist, pixel (ky, kx) = (0, −16)) that is exp(−80/256) = 0.73162,
    at s = 1/16 Å⁻¹ exp(−80/1024) = 0.92485; truth.star records rlnCtfBfactor 80."""
    base = read(simulate(tmp_path / "a", "--n", "3", "--seed", "7"))["images"]
    out = simulate(tmp_path / "b", "--n", "3", "--seed", "7", "--bfactor", "80")
    images = read(out)["images"]
    F0, F1 = (np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1))), axes=(-2, -1)) for x in (base, images))
    np.testing.assert_allclose(F1[:, 16, 0], 0.73162 * F0[:, 16, 0], rtol=1e-3, atol=1e-6 * np.abs(F0).max())
    np.testing.assert_allclose(F1[:, 16, 8], 0.92485 * F0[:, 16, 8], rtol=1e-3, atol=1e-6 * np.abs(F0).max())
    np.testing.assert_allclose(F1[:, 16, 16], F0[:, 16, 16], rtol=1e-5)
    assert np.all(truth(out)["rlnCtfBfactor"] == 80)


def test_noise_spectrum_from_file(tmp_path):
    """--noise-spectrum FILE (frequency 1/Å, relative power) is interpolated onto the shells and
    scaled to the SNR's variance: a table rising linearly gives a linearly rising spectrum."""
    table = tmp_path / "psd.txt"
    np.savetxt(table, [[0.0, 1.0], [0.125, 3.0]])
    out = simulate(tmp_path / "f", "--n", "2", "--snr", "1", "--noise-spectrum", str(table))
    p = np.loadtxt(out / "truth_noise_spectrum.txt")[:, 1]
    np.testing.assert_allclose(p / p[0], 1 + 2 * np.arange(17) / 16, rtol=1e-6)


@pytest.mark.parametrize("args", [["--preferred-view", "abc", "--preferred-fraction", "0.2"],
                                  ["--preferred-fraction", "0.2"], ["--junk-fraction", "1.5"],
                                  ["--junk-kinds", "ice,dust", "--junk-fraction", "0.1"],
                                  ["--noise-spectrum", "missing.txt", "--snr", "1"], ["--bfactor", "-5"]])
def test_bad_realism_options_are_one_line_errors(tmp_path, capsys, args):
    """Bad realism options give exit code 2 and one error line naming the option."""
    rc = cli(["simulate", "--n", "2", "--box", "16", "-o", str(tmp_path / "o"), *args])
    assert rc == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "simulate:" not in line]
    assert len(err) == 1 and err[0].startswith("error:") and args[0] in err[0], err


def test_stack_header_still_matches_data(junk):
    """The MRC header statistics cover the realistic images too."""
    with mrcfile.open(junk / "particles.mrcs") as m:
        assert float(m.header.dmax) == pytest.approx(float(m.data.max()))
