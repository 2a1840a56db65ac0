"""The CTF against facts derived by hand from CONVENTIONS.md (RELION's sign): value at s = 0, sign
at low frequency, position of the first zero, astigmatism direction, B-factor envelope, phase
plate, and the electron wavelength from physical constants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryoai.physics.ctf import CTF_COLUMNS, CTFParams, ctf, electron_wavelength_A

# CODATA 2018 (exact SI values where defined)
H = 6.62607015e-34
M_E = 9.1093837015e-31
E = 1.602176634e-19
C = 299792458.0


def wavelength_from_constants(kv: float) -> float:
    """Relativistic de Broglie wavelength λ = h / sqrt(2 m e V (1 + eV / 2mc²)), in Å."""
    v = kv * 1e3
    return H / math.sqrt(2 * M_E * E * v * (1 + E * v / (2 * M_E * C**2))) * 1e10


def wavelength_conventions(kv: float) -> float:
    """λ = 12.2643247 / sqrt(V·(1 + 0.978466e-6·V)) Å as printed in CONVENTIONS.md."""
    v = kv * 1e3
    return 12.2643247 / math.sqrt(v * (1 + 0.978466e-6 * v))


def params(dfu=15000.0, dfv=None, ang=0.0, kv=300.0, cs=2.7, w=0.1, phase=0.0, bfac=0.0) -> CTFParams:
    values = [dfu, dfu if dfv is None else dfv, ang, kv, cs, w, phase, bfac]
    return CTFParams.from_array(torch.tensor([values], dtype=torch.float64))


def along(direction_deg: float, s: np.ndarray) -> torch.Tensor:
    """(M, 2) frequencies (kx, ky) at radii s (1/Å) along a direction."""
    t = np.deg2rad(direction_deg)
    return torch.from_numpy(np.stack([s * np.cos(t), s * np.sin(t)], axis=1))


def first_zero(defocus: float, kv: float, cs_mm: float, w: float) -> float:
    """First zero of the CTF, by hand: CTF = 0 ⇔ √(1−w²)·sin γ = w·cos γ ⇔ tan γ = w/√(1−w²)
    ⇔ γ = asin(w) − nπ. For underfocus γ starts at 0 and decreases, so the first zero is at
    γ = asin(w) − π: (π/2)·Cs λ³ x² − π Δf λ x + (π − asin w) = 0 with x = s², smaller root."""
    lam = wavelength_from_constants(kv)
    cs = cs_mm * 1e7
    rhs = math.pi - math.asin(w)
    if cs == 0:
        return math.sqrt(rhs / (math.pi * defocus * lam))
    a, b = 0.5 * math.pi * cs * lam**3, math.pi * defocus * lam
    x = (b - math.sqrt(b * b - 4 * a * rhs)) / (2 * a)
    return math.sqrt(x)


def first_sign_change(values: np.ndarray, s: np.ndarray) -> float:
    i = int(np.nonzero(np.sign(values[1:]) != np.sign(values[:-1]))[0][0])
    return float(s[i] - values[i] * (s[i + 1] - s[i]) / (values[i + 1] - values[i]))


@pytest.mark.parametrize("kv, expected", [(300.0, 0.01969), (200.0, 0.02508), (120.0, 0.03349)])
def test_wavelength(kv, expected):
    """λ(300 kV) = 0.01969 Å, λ(200 kV) = 0.02508 Å (tables), and equal to h/p from physical constants."""
    lam = float(electron_wavelength_A(kv))
    assert abs(lam - expected) < 1e-5
    assert abs(lam - wavelength_conventions(kv)) < 1e-12
    assert abs(lam - wavelength_from_constants(kv)) < 1e-6  # the 12.2643247 fit is good to ~1e-5 relative


def test_matches_conventions_formula_written_out():
    """At random frequencies and astigmatic parameters the CTF equals the CONVENTIONS formula
    evaluated in numpy (its λ formula; that one is checked against physical constants above)."""
    rng = np.random.default_rng(0)
    k = rng.uniform(-0.3, 0.3, size=(500, 2))
    p = np.array([[21000.0, 18000.0, 37.0, 300.0, 2.7, 0.07, 20.0, 50.0],
                  [9000.0, 9500.0, -120.0, 200.0, 1.4, 0.1, 0.0, 0.0]])
    got = ctf(torch.from_numpy(k), CTFParams.from_array(p)).numpy()
    assert got.shape == (2, 500)
    s2 = (k**2).sum(1)
    theta = np.arctan2(k[:, 1], k[:, 0])
    for row, (dfu, dfv, ang, kv, cs, w, phase, b) in zip(got, p):
        lam = wavelength_conventions(kv)
        df = 0.5 * (dfu + dfv + (dfu - dfv) * np.cos(2 * (theta - np.deg2rad(ang))))
        gamma = 2 * np.pi * (-0.5 * df * lam * s2 + 0.25 * cs * 1e7 * lam**3 * s2**2) - np.deg2rad(phase)
        expected = -(np.sqrt(1 - w * w) * np.sin(gamma) - w * np.cos(gamma)) * np.exp(-b * s2 / 4)
        np.testing.assert_allclose(row, expected, atol=1e-9)


@pytest.mark.parametrize("w", [0.0, 0.07, 0.1, 0.3])
def test_value_at_zero_frequency_is_amplitude_contrast(w):
    """CTF(s = 0) = +w without a phase plate, whatever the defocus."""
    for df in (5000.0, 30000.0, -8000.0):
        assert float(ctf(torch.zeros(1, 2, dtype=torch.float64), params(df, w=w))) == pytest.approx(w, abs=1e-12)


def test_phase_plate_at_zero_frequency():
    """With φ = 90°, γ(0) = −π/2 so CTF(0) = −(√(1−w²)·(−1) − w·0) = √(1−w²) (0.99499 for w = 0.1)."""
    value = float(ctf(torch.zeros(1, 2, dtype=torch.float64), params(w=0.1, phase=90.0)))
    assert value == pytest.approx(math.sqrt(1 - 0.01), abs=1e-12)
    assert value == pytest.approx(0.99499, abs=1e-5)


@pytest.mark.parametrize("df, kv, cs, w", [(15000.0, 300.0, 2.7, 0.1), (8000.0, 200.0, 1.4, 0.1), (25000.0, 300.0, 0.0, 0.07)])
def test_positive_until_the_first_zero(df, kv, cs, w):
    """For underfocus the CTF is positive from s = 0 up to the hand-derived first zero, where it
    changes sign (γ = asin(w) − π)."""
    s1 = first_zero(df, kv, cs, w)
    s = np.linspace(0, 1.5 * s1, 3001)
    values = ctf(along(23.0, s), params(df, kv=kv, cs=cs, w=w)).numpy()[0]
    assert np.all(values[s < 0.999 * s1] > 0)
    assert values[np.argmin(np.abs(s - 1.01 * s1))] < 0
    assert first_sign_change(values, s) == pytest.approx(s1, rel=1e-4)


def test_astigmatism_direction():
    """With dfU > dfV and angle θ_ast the defocus along θ_ast is dfU: the first zero along θ_ast
    (and θ_ast + 180°) is the dfU one, at lower s than along θ_ast + 90° (the dfV one)."""
    dfu, dfv, ang = 20000.0, 12000.0, 30.0
    p = params(dfu, dfv, ang)
    s = np.linspace(0, 0.1, 40001)
    zero_u = first_sign_change(ctf(along(ang, s), p).numpy()[0], s)
    zero_u_opposite = first_sign_change(ctf(along(ang + 180, s), p).numpy()[0], s)
    zero_v = first_sign_change(ctf(along(ang + 90, s), p).numpy()[0], s)
    assert zero_u == pytest.approx(first_zero(dfu, 300, 2.7, 0.1), rel=1e-4)
    assert zero_u_opposite == pytest.approx(zero_u, rel=1e-6)
    assert zero_v == pytest.approx(first_zero(dfv, 300, 2.7, 0.1), rel=1e-4)
    assert zero_u < zero_v
    # the angle is measured from +x towards +y (θ = atan2(ky, kx)): along −30° the defocus is not dfU
    zero_mirror = first_sign_change(ctf(along(-ang, s), p).numpy()[0], s)
    assert zero_u < zero_mirror < zero_v


def test_bfactor_envelope():
    """B multiplies the CTF by exp(−B s²/4)."""
    s = np.linspace(0, 0.4, 50)
    k = along(10.0, s)
    plain = ctf(k, params(bfac=0.0)).numpy()[0]
    damped = ctf(k, params(bfac=120.0)).numpy()[0]
    np.testing.assert_allclose(damped, plain * np.exp(-120.0 * s**2 / 4), atol=1e-12)


def test_batched_frequencies_and_dtype():
    """Per-particle frequency sets (B, M, 2) give row b from frequencies b; the dtype follows freqs."""
    rng = np.random.default_rng(1)
    k = torch.from_numpy(rng.uniform(-0.2, 0.2, (2, 40, 2)))
    p = CTFParams.from_array(torch.cat([params(12000.0, 11000.0, 10.0).as_array(), params(30000.0, w=0.2).as_array()]))
    both = ctf(k, p)
    np.testing.assert_allclose(both[0].numpy(), ctf(k[0], p[:1])[0].numpy(), atol=1e-12)
    np.testing.assert_allclose(both[1].numpy(), ctf(k[1], p[1:])[0].numpy(), atol=1e-12)
    assert ctf(k[0].float(), p).dtype == torch.float32


def test_record_fields_rows_and_conversions():
    """The record's fields are the named columns; rows, NumPy ↔ torch and (N, 8) round-trip;
    the CTF of a row subset is that subset of the CTF."""
    rng = np.random.default_rng(2)
    values = rng.uniform(0.05, 3.0, (5, 8)) * np.array([1e4, 1e4, 30, 100, 1, 0.1, 10, 20])
    p = CTFParams.from_array(values)
    assert CTF_COLUMNS == ("defocus_u_A", "defocus_v_A", "defocus_angle_deg", "voltage_kV", "cs_mm",
                           "amp_contrast", "phase_shift_deg", "bfactor_A2")
    np.testing.assert_array_equal(p.voltage_kV, values[:, 3])
    np.testing.assert_array_equal(p.as_array(), values)
    rows = np.array([4, 1])
    t = p.to_torch(torch.float64)
    assert isinstance(t.defocus_u_A, torch.Tensor) and len(t) == 5 and len(p[rows]) == 2
    np.testing.assert_array_equal(t[torch.from_numpy(rows)].numpy().as_array(), values[rows])
    k = torch.from_numpy(rng.uniform(-0.2, 0.2, (30, 2)))
    np.testing.assert_array_equal(ctf(k, p[rows]).numpy(), ctf(k, t).numpy()[rows])
    with pytest.raises(ValueError):
        CTFParams.from_array(values[:, :7])
