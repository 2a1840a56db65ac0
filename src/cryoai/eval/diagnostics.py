"""Checks of a finished run that need no ground truth: each one number, a threshold and a verdict.

A user without the truth sees only the map and the poses; a run that ended at random poses
still writes a plausible blob. Each function here turns one symptom of failure into a
``Diagnostic`` (value, threshold, "pass"/"warn", one sentence). They are pure functions of
numbers and arrays; ``train/final_check.py`` computes their inputs and the thresholds were
chosen by measurement (README, "What to check in the report"):

- ``half_map_resolution``: the half maps' FSC at 0.143 stays far from Nyquist;
- ``anisotropic_agreement``: the half maps agree only through their spherical averages (what
  random poses give: every half map is then the molecule's spherical average, and those agree);
- ``view_coverage``: the viewing directions collapse onto a few directions;
- ``pose_stability``: the encoder's pose and the refined one disagree (an encoder that has not
  learned the poses: too little training, or poses the images do not determine);
- ``score_separation``: whether the per-particle figure of merit splits into two groups (a
  junk population); information only, since a clean stack has no second group.

Maps are (z, y, x) arrays of box L, centre at voxel L//2 (as ``eval/fsc.py``); rotations are
RELION matrices (N, 3, 3), whose third row is the viewing direction in the map's frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cryoai.eval.fsc import fsc, resolution, sphere_mask

PASS, WARN, INFO = "pass", "warn", "info"

# Thresholds, measured on 2000-particle sets at box 64, SNR 0.1 (README, "What to check in the
# report"): good runs (1500 steps: phantom 5.5° median error, 4AKE 9.7°) against failed ones
# (300 steps, 62–66°; --no-warm-start, 93°; pure noise) and the same particles at random poses.
MAX_HALF_MAP_RES_PX = 6.0  # half-map FSC 0.143 coarser than this (px of the training box): every
# run with refined poses 3.4–3.9 px, good or failed; random poses 7.1–8.3 px (pure noise 67)
MAX_ANISOTROPIC_RES_PX = 8.0  # the same without spherical averages: refined 3.4–3.9; random 31–inf
MIN_VIEW_COVERAGE = 0.3  # good 0.79–0.90, uniform 0.98, 30 % of views within ~20° of one 0.60;
# collapsed: --no-warm-start 0.06, pure noise 0.09
MAX_POSE_CHANGE_DEG = 36.0  # median encoder-to-refined angle: good 19–24° (2000 particles), 32.7° (4AKE,
# 10k, SNR 0.1, 5.5° median error against the truth); failed 45–173°, and 40.0° (8ZPM realistic set,
# 65° median error): a thin margin at low SNR, where this check alone can be wrong either way
MIN_SCORE_SEPARATION = 0.8  # Otsu between-group variance fraction of the figure of merit
MIN_AXES_SCORE = 0.8  # the warm start's C1 map about the axes found (train --symmetry): 3J9G C6 0.94 (no
# noise) and 0.98 (SNR 0.1), its D6 average 0.90; apoferritin O 0.53 where the run failed at 29.5°
VIEW_BINS = 100  # directions on a Fibonacci sphere, each bin ~ 410 square degrees (~ 23° across) …
VIEWS_PER_BIN = 20  # … or fewer bins, so that a uniform set fills each with this many on average


@dataclass(frozen=True)
class Diagnostic:
    """One check: ``value`` compared with ``threshold`` (units in ``unit``) gives ``verdict``."""

    name: str
    value: float
    threshold: float
    unit: str
    verdict: str  # PASS, WARN or INFO (information, never a warning)
    explanation: str  # one sentence for the user

    def to_dict(self) -> dict:
        return asdict(self)


def half_map_resolution(res_px: float, box: int, max_px: float = MAX_HALF_MAP_RES_PX, shared: bool = True) -> Diagnostic:
    """Warn when the half-map FSC drops below 0.143 at a resolution coarser than ``max_px``
    pixels (Nyquist is 2 px; ``res_px`` inf: below 0.143 from the first shell). ``shared``: the
    halves share one refinement, so a pass only rules out random poses (said in the sentence)."""
    ok = res_px <= max_px
    shell = box / res_px if np.isfinite(res_px) and res_px > 0 else 0.0
    text = f"the half maps agree to {res_px:.1f} px (shell {shell:.1f} of {box // 2})"
    if not ok:
        text += f", coarser than {max_px:g} px: the map holds little beyond a blob's outline."
    elif shared:
        text += (": this rules out random poses only, since halves that share one refinement agree about as far "
                 "even when the poses are wrong (the other checks tell).")
    else:
        text += ", from independently refined halves."
    return Diagnostic("half-map resolution", float(res_px), max_px, "px", PASS if ok else WARN, text)


def spherical_average(vol: np.ndarray) -> np.ndarray:
    """The map averaged over every rotation about the box centre: each voxel gets the mean of
    the voxels at the same rounded distance from voxel L//2."""
    vol = np.asarray(vol, dtype=np.float64)
    L = vol.shape[0]
    i = np.arange(L) - L // 2
    z, y, x = np.meshgrid(i, i, i, indexing="ij")
    r = np.rint(np.sqrt(x**2 + y**2 + z**2)).astype(np.int64)
    profile = np.bincount(r.ravel(), vol.ravel()) / np.maximum(np.bincount(r.ravel()), 1)
    return profile[r]


def anisotropic_fsc(half1: np.ndarray, half2: np.ndarray) -> np.ndarray:
    """FSC (inside the inscribed soft sphere) of the half maps after each loses its spherical
    average: what the maps share beyond a radial density profile."""
    a = np.asarray(half1, dtype=np.float64)
    b = np.asarray(half2, dtype=np.float64)
    return fsc(a - spherical_average(a), b - spherical_average(b), sphere_mask(a.shape[0]))


def anisotropic_agreement(half1: np.ndarray, half2: np.ndarray, max_px: float = MAX_ANISOTROPIC_RES_PX) -> Diagnostic:
    """Warn when the half maps without their spherical averages (``anisotropic_fsc``) agree
    only coarser than ``max_px`` pixels at FSC 0.143: random poses give each half map the
    molecule's spherical average, which agrees between halves; its non-spherical part does not."""
    L = np.asarray(half1).shape[0]
    _, res_px = resolution(anisotropic_fsc(half1, half2), 0.143, L, 1.0)
    ok = res_px <= max_px
    text = (f"without their spherical averages the half maps agree to {res_px:.1f} px"
            + ("." if ok else f", coarser than {max_px:g} px: the map is close to a spherical blob, "
                              "as random poses give."))
    return Diagnostic("non-spherical agreement", float(res_px), max_px, "px", PASS if ok else WARN, text)


def fibonacci_directions(n: int) -> np.ndarray:
    """``n`` unit vectors (n, 3) spread evenly over the sphere (equal areas)."""
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    phi = np.pi * (1 + 5**0.5) * k
    s = np.sqrt(1 - z**2)
    return np.stack([s * np.cos(phi), s * np.sin(phi), z], 1)


def view_coverage(rotations: np.ndarray, bins: int = VIEW_BINS, min_fraction: float = MIN_VIEW_COVERAGE) -> Diagnostic:
    """Warn when the viewing directions use less than ``min_fraction`` of ``bins`` equal-area
    bins, counted as exp(entropy)/bins of the bin occupancies (1: uniform, 1/bins: one view).
    Fewer bins for few particles (``VIEWS_PER_BIN`` each, at least 12), so that counting noise
    alone does not empty bins."""
    d = np.asarray(rotations, dtype=np.float64)[:, 2, :]
    bins = int(np.clip(len(d) // VIEWS_PER_BIN, 12, bins))
    nearest = np.argmax(d @ fibonacci_directions(bins).T, axis=1)
    p = np.bincount(nearest, minlength=bins) / len(d)
    p = p[p > 0]
    fraction = float(np.exp(-(p * np.log(p)).sum()) / bins)
    ok = fraction >= min_fraction
    text = (f"the viewing directions use {100 * fraction:.0f}% of {bins} equal-area bins"
            + ("." if ok else f", under {100 * min_fraction:.0f}%: the views have collapsed onto a few directions "
                              "(or the molecule truly has strongly preferred views)."))
    return Diagnostic("viewing-direction coverage", fraction, min_fraction, "fraction", PASS if ok else WARN, text)


def pose_stability(angles_deg: np.ndarray, max_median_deg: float = MAX_POSE_CHANGE_DEG) -> Diagnostic:
    """Warn when the median angle between two estimates of each pose (the encoder's and the
    refined one) exceeds ``max_median_deg``: the encoder has not learned them (too little training
    under a short limit, or poses the images do not determine)."""
    a = np.asarray(angles_deg, dtype=np.float64)
    median = float(np.median(a))
    within = float(np.mean(a <= max_median_deg))
    ok = median <= max_median_deg
    text = (f"the encoder's pose and the refined one differ by {median:.1f}° (median; "
            f"{100 * within:.0f}% within {max_median_deg:g}°)"
            + ("." if ok else ": the encoder has not learned the poses refinement found (too little training, or poses "
               "the images do not determine), so poses that start from it (cryoai predict, and particles outside "
               "the finish's refined subset) are not reliable; the other checks judge the refined poses."))
    return Diagnostic("pose stability", median, max_median_deg, "deg", PASS if ok else WARN, text)


def symmetry_axes(score: float, symbol: str, min_score: float = MIN_AXES_SCORE) -> Diagnostic:
    """Warn when the warm start's C1 map scored below ``min_score`` about the point group's axes
    found in it (``train --symmetry``; 1: exactly symmetric): the axes the run then imposed may
    be wrong, and a map symmetrised about wrong axes still looks symmetric."""
    ok = score >= min_score
    text = (f"the warm start's C1 map scores {score:.2f} about the {symbol} axes found in it"
            + ("." if ok else f": it does not show {symbol} clearly, so the axes imposed from then on may be wrong "
               "(try more particles, or train in C1 and check with cryoai align-symmetry)."))
    return Diagnostic("symmetry axes", score, min_score, "score", PASS if ok else WARN, text)


def otsu_separation(scores: np.ndarray) -> float:
    """The largest fraction of the variance of ``scores`` explained by splitting them into two
    groups at one threshold (Otsu's criterion): 2/π ≈ 0.64 for one Gaussian, → 1 for two
    well-separated groups."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    s = s[np.isfinite(s)]
    n = len(s)
    if n < 4 or s[-1] == s[0]:
        return 0.0
    k = np.arange(1, n)
    c = np.cumsum(s)[:-1]
    mean_lo, mean_hi = c / k, (s.sum() - c) / (n - k)
    between = k * (n - k) * (mean_lo - mean_hi) ** 2 / n**2
    return float(between.max() / s.var())


def score_separation(scores: np.ndarray, min_separation: float = MIN_SCORE_SEPARATION) -> Diagnostic:
    """Whether the figure of merit (rlnLogLikeliContribution) splits into two groups
    (``otsu_separation`` ≥ ``min_separation``). Information only: a clean stack has no junk group."""
    value = otsu_separation(scores)
    split = value >= min_separation
    text = ("the figure of merit splits into two groups: the lower one is likely junk (see --keep)." if split else
            "the figure of merit forms one group: no distinct junk population (fine for a clean stack).")
    return Diagnostic("figure-of-merit separation", value, min_separation, "fraction", INFO, text)


def overall(diagnostics: list[Diagnostic]) -> str:
    """WARN when any check warns, else PASS."""
    return WARN if any(d.verdict == WARN for d in diagnostics) else PASS
