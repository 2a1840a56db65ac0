"""Register predicted poses onto the truth (global rotation and hand) and measure pose errors.

Poses are RELION matrices A (image = ∫V(Aᵀ[x, y, z]) dz). An ab initio map lives in an
arbitrary frame and possibly the mirror hand: if the truth map is V*(u) = V(Gᵀu) the same
images have poses A* = A·Gᵀ, and for the mirror V(x, y, −z) they have J·A·J, J = diag(1, 1, −1).
So the registered prediction is R = A_h·Gᵀ with A_h = A ('same') or J·A·J ('flipped'), and the
best G maximises Σ tr(A*ᵢᵀ·A_h,i·Gᵀ) = ⟨G, Σ A*ᵢᵀ·A_h,i⟩: the special Procrustes rotation of
M = Σ A*ᵢᵀ·A_h,i. G is the same G as :func:`cryoai.eval.align.align_maps` returns for
``align_maps(truth_map, predicted_map)``.

Symmetric truth: if V*(S·u) = V*(u) for the rotations S of a point group, the poses A*·Sᵀ give
the same images as A*, so each particle's error is the smallest over them: ⟨G, S·Mᵢ⟩ replaces
⟨G, Mᵢ⟩ (Mᵢ = A*ᵢᵀ·A_h,i), and G is found up to the group.

Translations: neither a rotation of the map nor the mirror changes the images, so both leave the
in-plane origins unchanged and predicted origins are compared with the truth as they are (a
global shift of the predicted map would show up as a pose-dependent origin offset; it is not
fitted here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import roma
import torch

from cryoai.geometry.symmetry import point_group

J = np.diag([1.0, 1.0, -1.0])


@dataclass
class Registration:
    """``G`` (3, 3) and ``hand`` map predictions onto the truth; per-particle errors in degrees."""

    G: np.ndarray
    hand: str  # 'same' or 'flipped'
    errors_deg: np.ndarray  # (N,) angle between registered prediction and (the nearest equivalent of) the truth
    inliers: np.ndarray  # (N,) bool, the particles the final G was fitted on


def apply_registration(pred: np.ndarray, G: np.ndarray, hand: str) -> np.ndarray:
    """Registered poses R = A_h·Gᵀ (A_h = A, or J·A·J for hand 'flipped'), shape (N, 3, 3)."""
    A = np.asarray(pred, dtype=np.float64)
    if hand == "flipped":
        A = J @ A @ J
    return A @ np.asarray(G).T


def _procrustes(M: np.ndarray) -> np.ndarray:
    """The rotation closest to M (maximising ⟨G, M⟩), via roma."""
    return roma.special_procrustes(torch.as_tensor(M, dtype=torch.float64)).numpy()


def _angles(SM: np.ndarray, G: np.ndarray, which: bool = False):
    """Angles (deg) of Aᵢ·Gᵀ vs the nearest A*ᵢ·Sᵀ from SMₖᵢ = Sₖ·A*ᵢᵀ·Aᵢ (K, N, 3, 3):
    cos θᵢ = (maxₖ ⟨G, SMₖᵢ⟩ − 1)/2. G may be (H, 3, 3). ``which``: also the maximising k."""
    dots = np.einsum("...ab,knab->...kn", G, SM)
    cos = (dots.max(-2) - 1.0) / 2.0
    angles = np.rad2deg(np.arccos(np.clip(cos, -1.0, 1.0)))
    return (angles, dots.argmax(-2)) if which else angles


def _fit_one_hand(SM: np.ndarray, rng: np.random.Generator, n_iter: int, min_inlier_deg: float):
    """Robust G for products SMₖᵢ: best of single-particle hypotheses and the all-particle fit
    (by median error on a subset), then Procrustes refits, each particle with its nearest
    symmetry copy, on particles within max(3 × median error, ``min_inlier_deg``) until the
    inlier set stops changing."""
    N = SM.shape[1]
    sub = rng.choice(N, size=min(N, 2000), replace=False)
    hyp = np.concatenate([SM[0, rng.choice(N, size=min(N, 64), replace=False)], SM[0].sum(0, keepdims=True)])
    hyp = _procrustes(hyp)
    G = hyp[int(np.argmin(np.median(_angles(SM[:, sub], hyp), axis=1)))]
    inliers = np.ones(N, dtype=bool)
    for _ in range(n_iter):
        err, k = _angles(SM, G, which=True)
        new = err <= max(3.0 * np.median(err), min_inlier_deg)
        if new.sum() < 3:
            break
        G = _procrustes(SM[k[new], np.flatnonzero(new)].sum(0))
        if np.array_equal(new, inliers):
            break
        inliers = new
    return G, _angles(SM, G), inliers


def register_rotations(
    pred: np.ndarray, truth: np.ndarray, hands: tuple[str, ...] = ("same", "flipped"),
    n_iter: int = 20, min_inlier_deg: float = 2.0, seed: int = 0, symmetry: str = "C1",
) -> Registration:
    """The global rotation G and hand that best map predicted poses onto the true ones.

    ``pred`` and ``truth`` are (N, 3, 3) RELION matrices of the same particles; ``symmetry``
    the point group of the true map (``cryoai.geometry.symmetry.point_group``: Cn, Dn, T, O, I). Each hand is fitted robustly (outliers
    are expected in ab initio poses); the hand with the lower median error wins.
    """
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if pred.shape != truth.shape or pred.ndim != 3 or pred.shape[1:] != (3, 3) or len(pred) == 0:
        raise ValueError(f"register_rotations needs two (N, 3, 3) arrays, got {pred.shape} and {truth.shape}")
    best: Registration | None = None
    for hand in hands:
        A = J @ pred @ J if hand == "flipped" else pred
        M = np.swapaxes(truth, 1, 2) @ A  # Mᵢ = A*ᵢᵀ·A_h,i
        SM = point_group(symmetry)[:, None] @ M[None]  # (K, N, 3, 3): Sₖ·Mᵢ
        G, err, inl = _fit_one_hand(SM, np.random.default_rng(seed), n_iter, min_inlier_deg)
        if best is None or np.median(err) < np.median(best.errors_deg):
            best = Registration(G=G, hand=hand, errors_deg=err, inliers=inl)
    assert best is not None
    return best


def map_offset_A(pred_rot: np.ndarray, pred_origin_A: np.ndarray, true_origin_A: np.ndarray,
                 fit_on: np.ndarray | None = None) -> np.ndarray:
    """The offset t (3,) Å of the predicted map, in its own frame, that best explains the origin
    differences of the particles ``fit_on`` (a mask; None: all) by least squares. A map moved by
    a vector s projects at rotation R (RELION matrix) moved by the first two rows of R·s, so every
    origin moves by that (with the sign of the origin convention): predicted origin − true origin
    ≈ R[:2]·t, t = ±s. Fewer than 3 particles to fit on: all of them."""
    rot = np.asarray(pred_rot, float)
    d = np.asarray(pred_origin_A, float) - np.asarray(true_origin_A, float)
    use = np.ones(len(rot), bool) if fit_on is None or np.sum(fit_on) < 3 else np.asarray(fit_on, bool)
    return np.linalg.lstsq(rot[use, :2, :].reshape(-1, 3), d[use].reshape(-1), rcond=None)[0]


def origin_errors_A(pred_rot: np.ndarray, pred_origin_A: np.ndarray, true_origin_A: np.ndarray,
                    offset_A: np.ndarray) -> np.ndarray:
    """Per particle, the 2D distance (Å) between predicted and true origins once the predicted
    map's offset ``offset_A`` (``map_offset_A``) is taken out."""
    rot = np.asarray(pred_rot, float)
    d = np.asarray(pred_origin_A, float) - np.asarray(true_origin_A, float)
    return np.linalg.norm(d - rot[:, :2, :] @ np.asarray(offset_A, float), axis=1)


def evaluate_poses(
    pred_rot: np.ndarray, true_rot: np.ndarray, pred_origin_A: np.ndarray | None = None,
    true_origin_A: np.ndarray | None = None, apix: float | None = None, symmetry: str = "C1",
) -> dict:
    """Register predicted rotations onto the truth and summarise the errors (JSON-ready dict).
    ``symmetry``: the true map's point group; each error is then to the nearest equivalent pose.

    Keys: ``n_particles``, ``hand``, ``rotation`` (G, 3x3 list), ``inlier_fraction``,
    ``rot_median_sqfrob`` (median ‖R − R*‖²_F after registration; = 4(1 − cos θ)),
    ``rot_median_deg``, ``rot_mean_deg``, ``frac_within_{5,10,20}deg``, and for translations
    ``trans_median_A``, ``trans_mean_A``, ``trans_median_px``, ``trans_mean_px`` (the 2D
    distance between predicted and true origins, Å and pixels of ``apix`` Å, once the predicted
    map's offset is removed) and ``map_offset_A`` (that offset, (3,) Å, from ``map_offset_A``; all None
    without origins). Registration rotates or mirrors the map, which leaves every image and so
    every in-plane origin as it is, but an ab initio map's centre is free too: noise-free runs
    whose origins were 0.9-1.0 px off unregistered were 0.05 px off once it was removed.
    """
    reg = register_rotations(pred_rot, true_rot, symmetry=symmetry)
    e = reg.errors_deg
    sqfrob = 4.0 * (1.0 - np.cos(np.deg2rad(e)))  # ‖R − R*‖²_F of a rotation by θ
    out: dict = {
        "n_particles": int(len(e)),
        "symmetry": symmetry.strip().upper(),
        "hand": reg.hand,
        "rotation": reg.G.tolist(),
        "inlier_fraction": float(reg.inliers.mean()),
        "rot_median_sqfrob": float(np.median(sqfrob)),
        "rot_median_deg": float(np.median(e)),
        "rot_mean_deg": float(np.mean(e)),
    }
    for t in (5, 10, 20):
        out[f"frac_within_{t}deg"] = float(np.mean(e <= t))
    out.update(trans_median_A=None, trans_mean_A=None, trans_median_px=None, trans_mean_px=None, map_offset_A=None)
    if pred_origin_A is not None and true_origin_A is not None:
        offset = map_offset_A(pred_rot, pred_origin_A, true_origin_A, reg.inliers)
        d = origin_errors_A(pred_rot, pred_origin_A, true_origin_A, offset)
        out["map_offset_A"] = offset.tolist()
        out["trans_median_A"], out["trans_mean_A"] = float(np.median(d)), float(np.mean(d))
        if apix:
            out["trans_median_px"] = float(np.median(d) / apix)
            out["trans_mean_px"] = float(np.mean(d) / apix)
    return out
