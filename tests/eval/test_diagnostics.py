"""The run checks (eval/diagnostics.py) on inputs whose answer is known by construction."""

from __future__ import annotations

import numpy as np

from cryoai.eval import diagnostics as dg
from cryoai.geometry.rotations import euler_to_matrix, random_rotations


def blobs(L: int, centres, sigma: float = 1.5) -> np.ndarray:
    i = np.arange(L) - L // 2
    z, y, x = np.meshgrid(i, i, i, indexing="ij")
    return sum(np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma**2)) for cx, cy, cz in centres)


def test_half_map_resolution_warns_far_from_nyquist():
    assert dg.half_map_resolution(2.5, 64).verdict == dg.PASS
    d = dg.half_map_resolution(12.0, 64)
    assert d.verdict == dg.WARN and d.value == 12.0 and "12.0 px" in d.explanation
    assert dg.half_map_resolution(float("inf"), 64).verdict == dg.WARN


def test_spherical_average_of_a_radial_map_is_itself_and_keeps_the_mean_per_shell():
    L = 16
    radial = blobs(L, [(0, 0, 0)], sigma=3.0)
    assert np.abs(dg.spherical_average(radial) - radial).max() < 0.1  # within a rounded-radius shell
    off = blobs(L, [(4, 0, 0)])
    avg = dg.spherical_average(off)
    assert np.allclose(avg[L // 2, L // 2, L // 2 + 4], avg[L // 2 + 4, L // 2, L // 2])  # same radius, same value
    assert abs(avg.sum() - off.sum()) / off.sum() < 0.05


def test_anisotropic_agreement_tells_a_molecule_from_its_spherical_average():
    """Two noisy copies of an asymmetric molecule agree beyond their spherical averages; two
    noisy copies of its spherical average (what random poses give) agree only through it."""
    L, rng = 32, np.random.default_rng(0)
    molecule = blobs(L, [(5, 0, 0), (-3, 6, 1), (0, -4, 6), (-2, -3, -7)])
    noise = 0.02 * molecule.max()
    good = dg.anisotropic_agreement(molecule + noise * rng.normal(size=molecule.shape),
                                    molecule + noise * rng.normal(size=molecule.shape))
    blob = dg.spherical_average(molecule)
    bad = dg.anisotropic_agreement(blob + noise * rng.normal(size=blob.shape), blob + noise * rng.normal(size=blob.shape))
    assert good.verdict == dg.PASS and good.value < 4, good
    assert bad.verdict == dg.WARN and bad.value > 10, bad
    # the plain half-map FSC of the spherical blobs still agrees at low shells: why this check exists
    plain = dg.fsc(blob + noise * rng.normal(size=blob.shape), blob + noise * rng.normal(size=blob.shape))
    assert plain[2] > 0.9


def test_view_coverage_uniform_passes_one_view_and_a_great_circle_warn():
    rng = np.random.default_rng(0)
    uniform = dg.view_coverage(random_rotations(3000, rng))
    assert uniform.verdict == dg.PASS and uniform.value > 0.9, uniform
    one = dg.view_coverage(euler_to_matrix(rng.normal(0, 3, 3000), rng.normal(40, 3, 3000), rng.uniform(-180, 180, 3000)))
    assert one.verdict == dg.WARN and one.value < 0.05, one
    ring = dg.view_coverage(euler_to_matrix(rng.uniform(-180, 180, 3000), np.full(3000, 90.0), rng.uniform(-180, 180, 3000)))
    assert ring.verdict == dg.WARN, ring
    k = 900  # 30 % of 3000 views within ~20° of one direction (a preferred view, not a collapse)
    preferred = np.concatenate([random_rotations(3000 - k, rng),
                                euler_to_matrix(rng.normal(0, 10, k), rng.normal(40, 10, k), rng.uniform(-180, 180, k))])
    assert dg.view_coverage(preferred).verdict == dg.PASS
    few = dg.view_coverage(random_rotations(120, rng))  # 12 bins, not 100 mostly empty ones
    assert few.verdict == dg.PASS and few.value > 0.85 and "of 12 " in few.explanation, few


def test_fibonacci_directions_are_unit_and_balanced():
    d = dg.fibonacci_directions(100)
    assert np.allclose(np.linalg.norm(d, axis=1), 1) and np.abs(d.mean(0)).max() < 0.02


def test_pose_stability():
    assert dg.pose_stability(np.array([1.0, 2.0, 3.0, 40.0])).verdict == dg.PASS
    d = dg.pose_stability(np.array([5.0, 20.0, 70.0, 170.0]))
    assert d.verdict == dg.WARN and d.value == 45.0 and "50% within 36°" in d.explanation


def test_otsu_separation_one_group_versus_two():
    rng = np.random.default_rng(0)
    one = dg.otsu_separation(rng.normal(size=4000))
    assert abs(one - 2 / np.pi) < 0.03
    two = dg.otsu_separation(np.concatenate([rng.normal(0, 1, 3000), rng.normal(8, 1, 1000)]))
    assert two > 0.9
    assert dg.score_separation(rng.normal(size=100)).verdict == dg.INFO
    assert dg.otsu_separation(np.ones(10)) == 0.0


def test_overall_warns_when_any_check_warns_and_info_never_does():
    ok = dg.half_map_resolution(2.5, 64)
    info = dg.score_separation(np.arange(10.0))
    assert dg.overall([ok, info]) == dg.PASS
    assert dg.overall([ok, info, dg.half_map_resolution(30.0, 64)]) == dg.WARN


def test_symmetry_axes_warns_below_the_threshold():
    """The failed apoferritin run's C1 map scored 0.53 about its O axes: a warning; 3J9G's 0.94 passes."""
    bad, good = dg.symmetry_axes(0.53, "O"), dg.symmetry_axes(0.94, "C6")
    assert bad.verdict == dg.WARN and "O" in bad.explanation and bad.threshold == dg.MIN_AXES_SCORE
    assert good.verdict == dg.PASS and dg.symmetry_axes(dg.MIN_AXES_SCORE, "D6").verdict == dg.PASS
