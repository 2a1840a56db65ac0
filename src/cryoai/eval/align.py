"""Superpose one map onto another over rotations, translations and the mirror (handedness).

Maps are (z, y, x) arrays of box L, rotated about the centre voxel c = L/2 (0-based); vectors
are (x, y, z) in voxels relative to c. The transform that aligns ``mov`` onto ``ref`` is

    aligned(p) = mov_h(Gᵀ·(p − t)),   mov_h = mov (hand 'same') or flip_hand(mov) ('flipped'),

so a map rotated by G (V'(u) = V(Gᵀu)) has the same images as V with poses A' = A·Gᵀ, and the
mirror V'(x, y, z) = V(x, y, −z) has poses A' = J·A·J, J = diag(1, 1, −1). The search is global
(rotation grid ~15°, both hands, translations by FFT cross-correlation on a map Fourier-cropped
to box ~24) followed by local pattern searches on larger boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import roma
import torch
import torch.nn.functional as F

from cryoai.geometry.rotations import euler_to_matrix


@dataclass
class Alignment:
    """Result of :func:`align_maps`: ``aligned = transform_map(mov, rotation, shift, hand)``."""

    rotation: np.ndarray  # G, (3, 3)
    shift: np.ndarray  # t, (3,) voxels, (x, y, z)
    hand: str  # 'same' or 'flipped'
    aligned: np.ndarray  # mov moved onto ref, (z, y, x) float32
    score: float  # Pearson correlation of ref and aligned over the box


def flip_hand(vol: np.ndarray) -> np.ndarray:
    """Mirror along z about the centre voxel: out[i] = vol[(L − i) mod L] (voxel L/2 stays put)."""
    return np.roll(np.asarray(vol)[::-1], 1, axis=0).copy()


def _points(L: int, sphere: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Voxel positions p = (x, y, z) − c (all, or those within radius L/2) and their flat indices."""
    i = torch.arange(L, dtype=torch.float32) - L // 2
    z, y, x = torch.meshgrid(i, i, i, indexing="ij")
    p = torch.stack([x, y, z], dim=-1).reshape(-1, 3)
    idx = torch.arange(L**3)
    if sphere:
        keep = (p**2).sum(1) <= (L / 2) ** 2
        p, idx = p[keep], idx[keep]
    return p, idx


def _rotate_batch(vol: torch.Tensor, G: torch.Tensor, shift: torch.Tensor | None = None, sphere: bool = False) -> torch.Tensor:
    """out_b(p) = vol(G_bᵀ·(p − t_b)) by trilinear interpolation (0 outside the box) → (B, L, L, L).

    With align_corners=True index q has the normalised coordinate q/a − 1, a = (L−1)/2, so the
    sampled index q = Gᵀ(p − t) + c is the affine map θ·[p, 1] with θ = [Gᵀ/a | (c − Gᵀt)/a − 1].
    ``sphere=True`` evaluates only voxels within radius L/2 of the centre (the rest stay 0).
    """
    L, B = vol.shape[0], G.shape[0]
    shift = torch.zeros(B, 3) if shift is None else shift
    a, c = (L - 1) / 2.0, L // 2
    Gt = G.transpose(1, 2)
    trans = (c - (Gt @ shift[..., None])[..., 0]) / a - 1.0
    theta = torch.cat([Gt / a, trans[..., None]], dim=2)  # (B, 3, 4)
    p, idx = _points(L, sphere)
    hom = torch.cat([p, torch.ones(p.shape[0], 1)], dim=1)
    grid = torch.einsum("pk,bjk->bpj", hom, theta)  # (B, M, 3): normalised (x, y, z)
    inp = vol[None, None].expand(B, 1, L, L, L)
    vals = F.grid_sample(inp, grid[:, None, None], mode="bilinear", padding_mode="zeros", align_corners=True)
    out = torch.zeros(B, L**3)
    out[:, idx] = vals[:, 0, 0, 0]
    return out.reshape(B, L, L, L)


def transform_map(vol: np.ndarray, G: np.ndarray, shift=(0.0, 0.0, 0.0), hand: str = "same") -> np.ndarray:
    """out(p) = vol_h(Gᵀ·(p − shift)) with vol_h = vol or its mirror (hand 'flipped'); float32."""
    v = flip_hand(vol) if hand == "flipped" else np.asarray(vol)
    t = torch.as_tensor(np.asarray(v, dtype=np.float32))
    Gt = torch.as_tensor(np.asarray(G, dtype=np.float32)).reshape(1, 3, 3)
    s = torch.as_tensor(np.broadcast_to(np.asarray(shift, dtype=np.float32), (3,)).copy()).reshape(1, 3)
    return _rotate_batch(t, Gt, s)[0].numpy()


def _background(vol: np.ndarray) -> float:
    """Mean of the voxels outside a sphere of radius 0.45·L (the solvent level at the corners)."""
    L = vol.shape[0]
    i = np.arange(L) - L // 2
    z, y, x = np.meshgrid(i, i, i, indexing="ij")
    return float(vol[x**2 + y**2 + z**2 > (0.45 * L) ** 2].mean())


def _prepare(vol: np.ndarray, n: int, res_px: float | None) -> torch.Tensor:
    """Subtract the background, Gaussian low-pass (amplitude ½ at ``res_px`` voxels of box n),
    Fourier-crop to box n (centre L/2 → n/2) → float32 tensor."""
    vol = np.asarray(vol, dtype=np.float64)
    L = vol.shape[0]
    f = np.fft.fftshift(np.fft.fftn(vol - _background(vol)))
    if n < L:
        s = L // 2 - n // 2
        f = f[s : s + n, s : s + n, s : s + n]
    if res_px is not None:
        k = (np.arange(n) - n // 2) / n  # cycles per box-n voxel
        kz, ky, kx = np.meshgrid(k, k, k, indexing="ij")
        f = f * np.exp(-np.log(2.0) * (kx**2 + ky**2 + kz**2) * res_px**2)
    out = np.real(np.fft.ifftn(np.fft.ifftshift(f))) * (n / L) ** 3
    return torch.as_tensor(out.astype(np.float32))


def _peak(cc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per map of a batch (B, n, n, n) of circular correlations: the interpolated peak value and
    its position (x, y, z) in voxels, wrapped to [−n/2, n/2), refined by a parabola per axis."""
    B, n = cc.shape[0], cc.shape[1]
    flat = cc.reshape(B, -1)
    idx = flat.argmax(dim=1)
    zyx = torch.stack([idx // (n * n), (idx // n) % n, idx % n], dim=1)
    best = flat[torch.arange(B), idx]
    value, pos = best.clone(), zyx.to(cc.dtype)
    b = torch.arange(B)
    for axis in range(3):
        lo, hi = zyx.clone(), zyx.clone()
        lo[:, axis] = (lo[:, axis] - 1) % n
        hi[:, axis] = (hi[:, axis] + 1) % n
        cm, cp = cc[b, lo[:, 0], lo[:, 1], lo[:, 2]], cc[b, hi[:, 0], hi[:, 1], hi[:, 2]]
        den = cm - 2 * best + cp
        ok = den < 0
        d = torch.where(ok, 0.5 * (cm - cp) / torch.where(ok, den, -1.0), 0.0).clamp(-0.5, 0.5)
        pos[:, axis] += d
        value += torch.where(ok, -0.125 * (cp - cm) ** 2 / torch.where(ok, den, -1.0), 0.0)
    pos = (pos + n / 2) % n - n / 2
    return value, pos.flip(1)  # (z, y, x) → (x, y, z)


class _Scorer:
    """Normalised cross-correlation of ``ref`` with rotated copies of ``mov`` over all shifts."""

    def __init__(self, ref: torch.Tensor, mov: torch.Tensor, chunk: int):
        r = ref - ref.mean()
        self.ref_f = torch.fft.rfftn(r / r.norm())
        self.mov, self.n, self.chunk = mov, ref.shape[0], chunk

    def __call__(self, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rotations (B, 3, 3) → (scores (B,), best shifts (B, 3) in voxels of this box)."""
        Gt = torch.as_tensor(np.asarray(G, dtype=np.float32))
        scores, shifts = [], []
        for s in range(0, Gt.shape[0], self.chunk):
            rot = _rotate_batch(self.mov, Gt[s : s + self.chunk], sphere=True)
            rot = rot - rot.mean(dim=(1, 2, 3), keepdim=True)
            rot = rot / rot.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
            cc = torch.fft.irfftn(self.ref_f * torch.fft.rfftn(rot, dim=(1, 2, 3)).conj(), s=(self.n,) * 3, dim=(1, 2, 3))
            v, p = _peak(cc)
            scores.append(v)
            shifts.append(p)
        return torch.cat(scores).numpy().astype(np.float64), torch.cat(shifts).numpy().astype(np.float64)


def rotation_grid(step_deg: float) -> np.ndarray:
    """Near-uniform rotations with spacing ~``step_deg``: Fibonacci-sphere view directions
    (≈ 4π/step² of them) × in-plane angles every ``step_deg`` → (N, 3, 3)."""
    step = np.deg2rad(step_deg)
    n_dir = int(np.ceil(4 * np.pi / step**2))
    i = np.arange(n_dir)
    tilt = np.rad2deg(np.arccos(1 - (2 * i + 1) / n_dir))
    rot = np.rad2deg(i * np.pi * (3 - np.sqrt(5))) % 360
    psi = np.arange(0, 360, step_deg)
    r, p = np.repeat(rot, psi.size), np.tile(psi, n_dir)
    return euler_to_matrix(r, np.repeat(tilt, psi.size), p)


_DIRS = np.concatenate([np.eye(3), -np.eye(3), np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T / np.sqrt(3)])


def _pattern_search(score: _Scorer, G: np.ndarray, step_deg: float, min_step_deg: float, max_iter: int = 60):
    """Local search: try G ← exp(step·e)·G for 14 axes e; move if better, else halve the step."""
    s, t = score(G[None])
    best, shift = s[0], t[0]
    for _ in range(max_iter):
        if step_deg < min_step_deg:
            break
        R = roma.rotvec_to_rotmat(torch.as_tensor(_DIRS * np.deg2rad(step_deg))).numpy()
        cand = R @ G
        s, t = score(cand)
        k = int(np.argmax(s))
        if s[k] > best + 1e-7:
            G, best, shift = cand[k], s[k], t[k]
        else:
            step_deg /= 2
    return G, best, shift


def _distinct_top(G: np.ndarray, s: np.ndarray, k: int, min_deg: float) -> list[int]:
    """Indices of the ``k`` best scores whose rotations are at least ``min_deg`` apart."""
    chosen: list[int] = []
    for i in np.argsort(-s):
        if all(np.rad2deg(np.arccos(np.clip((np.trace(G[i].T @ G[j]) - 1) / 2, -1, 1))) > min_deg for j in chosen):
            chosen.append(int(i))
        if len(chosen) == k:
            break
    return chosen


def align_maps(
    ref: np.ndarray, mov: np.ndarray, apix: float = 1.0, *, init: tuple[np.ndarray, str] | None = None,
    coarse_box: int = 24, coarse_step_deg: float = 15.0, n_candidates: int = 3, hands=("same", "flipped"),
    global_search: bool = True,
) -> Alignment:
    """Best superposition of ``mov`` onto ``ref`` (same box): rotation G, shift t (voxels), hand.

    ``apix`` (Å) only documents units; the search works in voxels. ``init`` = (G, hand), e.g.
    from pose registration, is refined alongside the global search's ``n_candidates`` best
    per hand; with ``global_search=False`` only ``init`` is refined.
    """
    ref = np.asarray(ref, dtype=np.float32)
    mov = np.asarray(mov, dtype=np.float32)
    if ref.shape != mov.shape:
        raise ValueError(f"align_maps needs maps of the same box, got {ref.shape} and {mov.shape}")
    L = ref.shape[0]
    movs = {h: (flip_hand(mov) if h == "flipped" else mov) for h in hands}

    # stage 1: global grid on a small box; stage 2: pattern search on box ≤ 48 from the best few
    n1, n2 = min(L, coarse_box), min(L, 48)
    ref2 = _prepare(ref, n2, 2.5)
    starts: list[tuple[str, np.ndarray]] = []
    if global_search:
        grid = rotation_grid(coarse_step_deg)
        ref1 = _prepare(ref, n1, 3.0)
        for h in hands:
            s, _ = _Scorer(ref1, _prepare(movs[h], n1, 3.0), chunk=128)(grid)
            starts += [(h, grid[i]) for i in _distinct_top(grid, s, n_candidates, 2 * coarse_step_deg)]
    if init is not None:
        starts.append((init[1], np.asarray(init[0], dtype=np.float64)))
    if not starts:
        raise ValueError("align_maps: nothing to refine (global_search=False and no init)")
    scorers2 = {h: _Scorer(ref2, _prepare(movs[h], n2, 2.5), chunk=16) for h in {h for h, _ in starts}}
    refined = [(h, *_pattern_search(scorers2[h], G, coarse_step_deg / 2, 2.0)) for h, G in starts]
    hand, G, _, _ = max(refined, key=lambda r: r[2])

    # stage 3: fine search on box ≤ 96 (full size for small maps), then the full-size map
    n3 = min(L, 96)
    fine = _Scorer(_prepare(ref, n3, 1.5), _prepare(movs[hand], n3, 1.5), chunk=16)
    G, _, shift = _pattern_search(fine, G, 2.0, 0.1)
    shift = shift * (L / n3)
    aligned = transform_map(mov, G, shift, hand)
    a, b = ref - ref.mean(), aligned - aligned.mean()
    score = float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-30))
    return Alignment(rotation=G, shift=shift, hand=hand, aligned=aligned, score=score)
