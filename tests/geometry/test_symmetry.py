"""Point-group tables against RELION: the same rotations as ``relion_refine --print_symmetry_ops``,
and a map symmetrised with them equals ``relion_image_handler --sym`` (which catches a wrong
axis, a transposed matrix or an (x, y, z) ↔ (z, y, x) mix-up, as the table alone would not)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from cryoai.geometry.symmetry import generators, group_order, parse_symmetry, point_group

SYMBOLS = ["C1", "C2", "C6", "C7", "D1", "D2", "D7", "T", "O", "I", "I1", "I2", "I3", "I4"]


def _same_set(a: np.ndarray, b: np.ndarray, tol: float = 2e-4) -> bool:
    d = np.abs(a[:, None] - b[None]).max(axis=(2, 3))
    return len(a) == len(b) and bool((d.min(1) < tol).all() and (d.min(0) < tol).all())


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_group_has_its_order_and_is_closed(symbol):
    g = point_group(symbol)
    kind, n = parse_symmetry(symbol)
    assert len(g) == group_order(symbol) == {"C": n, "D": 2 * n, "T": 12, "O": 24}.get(kind, 60)
    np.testing.assert_allclose(g[0], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(g @ np.swapaxes(g, 1, 2), np.broadcast_to(np.eye(3), g.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(g), 1.0, atol=1e-9)
    products = (g[:, None] @ g[None]).reshape(-1, 1, 3, 3)
    assert (np.abs(products - g[None]).max(axis=(2, 3)) < 1e-9).any(axis=1).all()  # closed
    assert len(np.unique(np.round(g, 6) + 0.0, axis=0)) == len(g)  # distinct
    assert _same_set(point_group(symbol), _generated_by(generators(symbol)), 1e-6)


def _generated_by(gens: np.ndarray) -> np.ndarray:
    """Brute-force closure of the generators (words up to length 12), independent of the module's."""
    elems = [np.eye(3)]
    for _ in range(12):
        for p in [g @ e for e in elems for g in gens]:
            if min(np.abs(p - e).max() for e in elems) > 1e-6:
                elems.append(p)
    return np.array(elems)


def test_axes_are_relions():
    """Spot checks written from RELION's documentation: Cn about z, the Dn two-fold about x, O's
    four-folds on x, y, z, I2's two-folds on x, y, z with five-folds in the xz plane."""
    quarter_z = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert (np.abs(point_group("C4") - quarter_z).max(axis=(1, 2)) < 1e-12).any()
    assert (np.abs(point_group("D3") - np.diag([1.0, -1.0, -1.0])).max(axis=(1, 2)) < 1e-12).any()
    for two_fold in (np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0])):
        assert (np.abs(point_group("I") - two_fold).max(axis=(1, 2)) < 1e-9).any()
    assert _same_set(point_group("I"), point_group("I2"), 1e-12)
    axis = np.array([1.0, 0.0, (1 + 5**0.5) / 2])
    assert any(np.allclose(S @ axis, axis) and abs(np.trace(S) - (1 + 2 * np.cos(0.4 * np.pi))) < 1e-9 for S in point_group("I"))


@pytest.mark.parametrize("bad", ["C0", "D0", "I5", "X", "6", "C", ""])
def test_bad_symbols_are_refused(bad):
    with pytest.raises(ValueError, match="Cn or Dn"):
        point_group(bad)


def _relion_ops(symbol: str) -> np.ndarray:
    out = subprocess.run(["relion_refine", "--sym", symbol, "--print_symmetry_ops"], capture_output=True,
                         text=True, timeout=60).stdout
    lines = out.splitlines()
    return np.array([[[float(x) for x in lines[i + j].split()] for j in (1, 2, 3)]
                     for i, line in enumerate(lines) if re.match(r"\s*R\(\d+\)=", line)])


@pytest.mark.skipif(shutil.which("relion_refine") is None, reason="RELION not installed")
@pytest.mark.parametrize("symbol", ["C4", "D7", "T", "O", "I", "I1", "I3", "I4"])
def test_tables_equal_relions(symbol):
    assert _same_set(point_group(symbol), _relion_ops(symbol))


@pytest.mark.skipif(shutil.which("relion_image_handler") is None, reason="RELION not installed")
@pytest.mark.parametrize("symbol", ["C4", "D7", "T", "O", "I"])
def test_symmetrised_map_equals_relions(symbol, tmp_path):
    from cryoai.eval.map_symmetry import symmetrise_map
    from cryoai.geometry.symmetry import axis_rotation
    from cryoai.io.mrc import read_map, write_map

    box = 32
    i = np.arange(box) - box // 2
    z, y, x = np.meshgrid(i, i, i, indexing="ij")
    inside = x**2 + y**2 + z**2 < (0.4 * box) ** 2
    k = np.sqrt(sum(f**2 for f in np.meshgrid(*[np.fft.fftfreq(box)] * 3, indexing="ij")))
    noise = np.random.default_rng(0).standard_normal((box,) * 3)
    vol = (np.real(np.fft.ifftn(np.fft.fftn(noise) * np.exp(-((4 * k) ** 2)))) * inside).astype(np.float32)
    write_map(tmp_path / "in.mrc", vol, 2.0)
    subprocess.run(["relion_image_handler", "--i", str(tmp_path / "in.mrc"), "--o", str(tmp_path / "sym.mrc"),
                    "--sym", symbol], check=True, capture_output=True, timeout=120)
    relion, _ = read_map(tmp_path / "sym.mrc")

    def corr(a, b):
        return np.corrcoef(a[inside], b[inside])[0, 1]

    assert corr(relion, symmetrise_map(vol, symbol)) > 0.99
    # the same group turned by 45° about z (or about x for C4) is told apart
    turn = axis_rotation((1.0, 0.0, 0.0) if symbol == "C4" else (0.0, 0.0, 1.0), np.pi / 4)
    assert corr(relion, symmetrise_map(vol, symbol, frame=turn)) < 0.9


@pytest.mark.parametrize("symbol", ["C6", "D3", "O"])
def test_poses_in_the_asymmetric_unit_are_equivalent_and_fill_relions_wedge(symbol):
    from cryoai.geometry.rotations import matrix_to_euler, random_rotations
    from cryoai.geometry.symmetry import to_asymmetric_unit

    A = random_rotations(500, np.random.default_rng(2))
    B = to_asymmetric_unit(A, symbol)
    S = np.swapaxes(A, 1, 2) @ B  # Aᵀ·B must be some Sᵀ
    ops = np.swapaxes(point_group(symbol), 1, 2)
    assert (np.abs(S[:, None] - ops[None]).max(axis=(2, 3)) < 1e-9).any(axis=1).all()
    np.testing.assert_allclose(to_asymmetric_unit(B, symbol), B, atol=1e-12)  # already there
    rot, tilt, _ = matrix_to_euler(B)
    kind, n = parse_symmetry(symbol)
    if kind in "CD":
        assert ((rot % 360) < 360 / n + 1e-6).all()
        assert kind == "C" or (tilt <= 90 + 1e-6).all()
    else:  # the unit is 1/24 of the sphere of views
        assert len(np.unique(np.round(np.swapaxes(A, 1, 2) @ B, 6).reshape(500, -1), axis=0)) > 12


def test_distance_modulo_group_is_zero_between_equivalent_poses_and_geodesic_in_c1():
    from cryoai.geometry.rotations import geodesic_distance_deg, random_rotations
    from cryoai.geometry.symmetry import distance_modulo_group_deg

    A, B = (random_rotations(8, np.random.default_rng(s)) for s in (1, 2))
    ops = point_group("D3")
    assert np.allclose(distance_modulo_group_deg(A, A @ ops[np.arange(8) % 6].transpose(0, 2, 1), "D3"), 0.0, atol=1e-4)
    np.testing.assert_allclose(distance_modulo_group_deg(A, B, "C1"), geodesic_distance_deg(A, B), atol=1e-6)
    assert (distance_modulo_group_deg(A, B, "D3") <= geodesic_distance_deg(A, B) + 1e-9).all()
