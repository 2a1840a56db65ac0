"""Fourier shell correlation, resolution at a threshold, and FSC masks.

Maps are (z, y, x) arrays of box L with the centre at voxel L/2 (0-based). Shells are the
integer radii r = 0 … L//2 in Fourier pixels of the centred frequency grid (frequencies
−L/2 … L/2−1 per axis); a voxel at frequency radius |k| (pixels) belongs to shell round(|k|).
Shell r corresponds to the spatial frequency r/(L·apix) in 1/Å, i.e. a resolution of
L/r pixels = L·apix/r Å; Nyquist is shell L/2, 2 pixels.
"""

from __future__ import annotations

import os

import numpy as np

from cryoai.errors import InputError


def _shell_index(L: int) -> tuple[np.ndarray, np.ndarray]:
    """Shell number and Hermitian weight of every coefficient of an ``rfftn`` of box L.

    ``rfftn`` keeps only kx ≥ 0; each coefficient with 0 < kx < L/2 stands for itself and its
    conjugate partner at −k, so it counts twice; the planes kx = 0 and kx = L/2 count once.
    """
    k = np.fft.fftfreq(L) * L  # integer frequencies, unshifted order
    kx = np.fft.rfftfreq(L) * L
    kz, ky, kxx = np.meshgrid(k, k, kx, indexing="ij")
    shell = np.rint(np.sqrt(kz**2 + ky**2 + kxx**2)).astype(np.int64)
    weight = np.full(kxx.shape, 2.0)
    weight[..., 0] = 1.0
    if L % 2 == 0:
        weight[..., -1] = 1.0
    return shell, weight


def fsc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """FSC between maps ``a`` and ``b`` (same cubic box L), one value per shell r = 0 … L//2.

    FSC(r) = Re Σ F_a·conj(F_b) / sqrt(Σ|F_a|² · Σ|F_b|²) over the voxels of shell r, with
    both maps first multiplied by ``mask`` (values in [0, 1]) when given. Shells with no
    power in either map get 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3 or len(set(a.shape)) != 1:
        raise ValueError(f"fsc needs two cubic maps of the same box, got {a.shape} and {b.shape}")
    if mask is not None:
        a = a * mask
        b = b * mask
    L = a.shape[0]
    fa, fb = np.fft.rfftn(a), np.fft.rfftn(b)
    shell, weight = _shell_index(L)
    n = L // 2 + 1
    keep = shell < n
    s, w = shell[keep], weight[keep]
    num = np.bincount(s, weights=w * np.real(fa * np.conj(fb))[keep], minlength=n)
    pa = np.bincount(s, weights=w * (np.abs(fa) ** 2)[keep], minlength=n)
    pb = np.bincount(s, weights=w * (np.abs(fb) ** 2)[keep], minlength=n)
    den = np.sqrt(pa * pb)
    out = np.zeros(n)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out


def resolution(fsc_curve: np.ndarray, threshold: float, box: int, apix: float) -> tuple[float, float]:
    """Resolution where the FSC first drops below ``threshold`` → (Å, pixels).

    The search starts at shell 1 (the DC shell only compares the means). Between the last
    shell at or above the threshold and the first below it the crossing radius r is linearly
    interpolated; resolution = L/r pixels = L·apix/r Å. A curve that never drops below the
    threshold gives Nyquist (2 pixels); one already below it at shell 1 (and 0) gives inf.
    """
    f = np.asarray(fsc_curve, dtype=np.float64)
    below = np.nonzero(f[1:] < threshold)[0]
    if below.size == 0:
        r = box / 2.0
    else:
        i = int(below[0]) + 1
        if f[i - 1] >= threshold:
            r = (i - 1) + (f[i - 1] - threshold) / (f[i - 1] - f[i])
        else:
            r = float(i - 1)
    if r <= 0:
        return float("inf"), float("inf")
    res_px = box / r
    return res_px * apix, res_px


def shell_frequencies(box: int, apix: float) -> np.ndarray:
    """Spatial frequency (1/Å) of each shell r = 0 … L//2: r / (L·apix)."""
    return np.arange(box // 2 + 1) / (box * apix)


# ----------------------------------------------------------------------------- masks


def _radius_grid(L: int) -> np.ndarray:
    """Distance (voxels) of every voxel from the box centre L/2."""
    i = np.arange(L) - L // 2
    z, y, x = np.meshgrid(i, i, i, indexing="ij")
    return np.sqrt(x**2 + y**2 + z**2)


def _convolve(vol: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Circular convolution of ``vol`` with a kernel centred at voxel L/2."""
    k = np.fft.ifftshift(kernel)
    return np.fft.irfftn(np.fft.rfftn(vol) * np.fft.rfftn(k), s=vol.shape, axes=(0, 1, 2))


def lowpass(vol: np.ndarray, apix: float, res_A: float) -> np.ndarray:
    """Gaussian low-pass: amplitude 0.5 at 1/res_A (1/Å)."""
    L = vol.shape[0]
    k = np.fft.fftfreq(L, d=apix)
    kx = np.fft.rfftfreq(L, d=apix)
    kz, ky, kxx = np.meshgrid(k, k, kx, indexing="ij")
    s2 = kz**2 + ky**2 + kxx**2
    g = np.exp(-np.log(2.0) * s2 * res_A**2)
    return np.fft.irfftn(np.fft.rfftn(vol) * g, s=vol.shape, axes=(0, 1, 2))


def sphere_mask(L: int, radius: float | None = None, edge: float | None = None) -> np.ndarray:
    """Soft sphere about the box centre: 1 inside ``radius``, cosine fall-off over ``edge`` voxels.

    Defaults: edge = max(3, L/16) voxels, radius = L/2 − 1 − edge (the mask is 0 at the box edge).
    """
    edge = max(3.0, L / 16) if edge is None else float(edge)
    radius = L / 2 - 1 - edge if radius is None else float(radius)
    r = _radius_grid(L)
    t = np.clip((r - radius) / edge, 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)


def auto_mask(
    vol: np.ndarray, apix: float, lowpass_A: float = 15.0, fraction: float = 0.1,
    dilate_px: float = 3.0, edge_px: float = 5.0,
) -> np.ndarray:
    """Mask from the map itself: low-pass (to max(``lowpass_A``, 4 px)), threshold at
    ``fraction`` of its maximum, dilate by ``dilate_px`` voxels, add a soft edge ~``edge_px`` wide."""
    vol = np.asarray(vol, dtype=np.float64)
    L = vol.shape[0]
    lp = lowpass(vol, apix, max(lowpass_A, 4.0 * apix))
    binary = (lp > fraction * lp.max()).astype(np.float64)
    if not binary.any():
        return sphere_mask(L)
    r = _radius_grid(L)
    # dilate by the hard part plus half the edge, then average over a ball of radius edge/2:
    # the result is 1 inside the dilated region and ramps to 0 over about edge_px.
    ball = (r <= dilate_px + edge_px / 2).astype(np.float64)
    grown = (_convolve(binary, ball) > 0.5).astype(np.float64)
    smooth = (r <= edge_px / 2).astype(np.float64)
    soft = _convolve(grown, smooth / smooth.sum())
    return np.clip(soft, 0.0, 1.0).astype(np.float32)


def make_mask(spec: str | None, maps: list[np.ndarray], apix: float) -> np.ndarray | None:
    """Mask from a CLI spec: None/'none' → no mask, 'auto', 'sphere', or the path of a mask MRC."""
    if spec is None or spec == "none":
        return None
    L = maps[0].shape[0]
    if spec == "sphere":
        return sphere_mask(L)
    if spec == "auto":
        return auto_mask(np.mean(maps, axis=0), apix)
    from cryoai.io.mrc import read_map

    if not os.path.isfile(spec):
        raise InputError(f"--mask {spec}: not 'auto', 'sphere' or an existing mask MRC file")
    mask, _ = read_map(spec)
    if mask.shape != maps[0].shape:
        raise InputError(f"--mask {spec}: box {mask.shape[0]} differs from the maps' box {L}; resample the mask")
    return np.clip(mask, 0.0, 1.0)
