"""Comparing two maps: read a pair that must share box and voxel size, align one onto the other
(rotation, shift, hand) and measure their Fourier shell correlation."""

from __future__ import annotations

import math

import numpy as np

from cryoai.errors import InputError
from cryoai.eval.fsc import fsc, make_mask, resolution
from cryoai.eval.align import align_maps
from cryoai.io.mrc import read_map


def load_map_pair(path_a: str, path_b: str, apix: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Read two maps that must share box and voxel size → (a, b, apix in Å)."""
    a, apix_a = read_map(path_a)
    b, apix_b = read_map(path_b)
    if a.shape != b.shape:
        raise InputError(f"{path_a} has box {a.shape[0]} but {path_b} has box {b.shape[0]}; "
                         f"resample one map to the other's box and voxel size")
    if apix is None:
        if apix_a > 0 and apix_b > 0 and abs(apix_a - apix_b) > 1e-3 * max(apix_a, apix_b):
            raise InputError(f"{path_a} has voxel size {apix_a:.4g} Å but {path_b} has {apix_b:.4g} Å; "
                             f"resample one map (or pass --apix if a header is wrong)")
        apix = apix_a if apix_a > 0 else apix_b
    if not apix or apix <= 0:
        raise InputError(f"{path_a}, {path_b}: no voxel size in the headers; pass --apix in Å")
    return a, b, float(apix)


def compare_maps(ref: np.ndarray, mov: np.ndarray, apix: float, align: bool = False,
                 mask: str | None = None, init: tuple[np.ndarray, str] | None = None,
                 global_search: bool = True) -> dict:
    """FSC of ``ref`` and ``mov`` (aligned onto ``ref`` first when ``align``) → results dict.

    Keys: ``res_0.5_A``, ``res_0.143_A``, ``res_0.5_px``, ``res_0.143_px`` (None when the
    curve starts below the threshold), ``hand``, ``rotation`` (G, 3x3 list), ``shift_px``
    ((x, y, z) voxels), ``align_score``, and (not JSON) ``fsc`` (per shell), ``aligned``.
    """
    G, shift, hand, score = np.eye(3), np.zeros(3), "same", None
    if align:
        al = align_maps(ref, mov, apix, init=init, global_search=global_search)
        G, shift, hand, score, mov = al.rotation, al.shift, al.hand, al.score, al.aligned
    curve = fsc(ref, mov, make_mask(mask, [ref, mov], apix))
    L = ref.shape[0]
    out: dict = {}
    for t in (0.5, 0.143):
        res_A, res_px = resolution(curve, t, L, apix)
        out[f"res_{t}_A"] = res_A if math.isfinite(res_A) else None
        out[f"res_{t}_px"] = res_px if math.isfinite(res_px) else None
    out.update(hand=hand, rotation=np.asarray(G).tolist(), shift_px=np.asarray(shift).tolist(),
               align_score=score, fsc=curve, aligned=mov)
    return out
