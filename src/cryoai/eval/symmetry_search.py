"""Find a point group's axes in a map, turn the map onto the group's standard orientation, and
score which cyclic and dihedral groups a map has (like ``relion_align_symmetry``).

The orientation of the group in the map, F (the frame; see :mod:`cryoai.eval.map_symmetry`),
is searched by how well the map matches itself turned by the group's generators F·g·Fᵀ: a
coarse grid (over the sphere of axis directions for Cn; directions × the in-plane angle of the
two-fold for Dn; over SO(3) for T, O and I) on a small low-passed copy of the map, then a local
search from the few best on a larger one. The map turned onto the standard orientation is
out(u) = V(F·u): the rotation R = Fᵀ, and a particle's pose A in the input map becomes A·Rᵀ.

Each map is compared with its copies after removing its spherical average (as in
``map_symmetry.correlation``); the check's Cn scores also remove the average about the axis
(a ring's cylindrical average is invariant under every Cn about its axis, so it would score all
of them high).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import roma
import torch

from cryoai.eval.align import _prepare, _rotate_batch, rotation_grid
from cryoai.eval.map_symmetry import rotate_to_standard, symmetry_score
from cryoai.geometry.symmetry import axis_rotation, generators, parse_symmetry, point_group


@dataclass
class SymmetryFit:
    """The group's orientation in a map: operators F·S·Fᵀ; R = Fᵀ turns the map onto the standard one."""

    symbol: str
    frame: np.ndarray  # F (3, 3)
    score: float  # symmetry_score of the map about F

    @property
    def rotation(self) -> np.ndarray:
        return self.frame.T


def frame_from_axis(axis) -> np.ndarray:
    """The smallest rotation F taking z to ``axis`` (x, y, z); the identity for z itself."""
    d = np.asarray(axis, dtype=np.float64)
    d = d / np.linalg.norm(d)
    c = np.cross([0.0, 0.0, 1.0], d)
    if np.linalg.norm(c) < 1e-12:
        return np.eye(3) if d[2] > 0 else axis_rotation((1.0, 0.0, 0.0), np.pi)
    return axis_rotation(c, np.arctan2(np.linalg.norm(c), d[2]))


def hemisphere(step_deg: float) -> np.ndarray:
    """Near-uniform directions (M, 3) with z ≥ 0, spaced ~``step_deg`` (a Fibonacci sphere)."""
    n = int(np.ceil(4 * np.pi / np.deg2rad(step_deg) ** 2))
    i = np.arange(n)
    z = 1 - (2 * i + 1) / n
    phi = i * np.pi * (3 - np.sqrt(5))
    d = np.stack([np.sqrt(1 - z**2) * np.cos(phi), np.sqrt(1 - z**2) * np.sin(phi), z], axis=1)
    return d[z >= 0]


class _SelfMatch:
    """Mean over the generators g of the correlation of a map with itself turned by F·g·Fᵀ,
    for a batch of frames F, over the sphere of radius box/2 − 1 with the spherical average
    removed. The reference's departures are orthogonal to any function of the radius alone, so
    a turned copy's shell means drop out of the product and only its norm needs them."""

    def __init__(self, vol: np.ndarray, box: int, res_px: float, symbol: str, chunk: int = 64):
        v = _prepare(vol, box, res_px)
        self.input = v[None, None]
        i = torch.arange(box, dtype=torch.float32) - box // 2
        z, y, x = torch.meshgrid(i, i, i, indexing="ij")
        p = torch.stack([x, y, z], dim=-1).reshape(-1, 3)
        r = p.norm(dim=1)
        inside = r <= box / 2 - 1
        self.points, shell = p[inside], r[inside].round().long()
        self.one_hot = torch.nn.functional.one_hot(shell).float()  # (M, shells)
        self.count = self.one_hot.sum(0).clamp_min(1)
        self.a, self.c = (box - 1) / 2.0, box // 2
        ref = v.flatten()[inside]
        ref = ref - (ref @ self.one_hot / self.count)[shell]
        self.ref = ref / ref.norm().clamp_min(1e-12)
        self.gens = torch.as_tensor(generators(symbol), dtype=torch.float32)
        self.chunk = chunk

    def _correlations(self, ops: torch.Tensor) -> torch.Tensor:
        """(B,) correlations of the reference with the map turned by each of ``ops`` (B, 3, 3):
        turned(p) = v(Sᵀp), sampled trilinearly at the sphere's voxels."""
        q = (self.points @ ops + self.c) / self.a - 1.0  # (B, M, 3): rows pᵀ·S = (Sᵀp)ᵀ, normalised
        vals = torch.nn.functional.grid_sample(self.input.expand(len(ops), -1, -1, -1, -1), q[:, None, None],
                                               mode="bilinear", padding_mode="zeros", align_corners=True)
        vals = vals[:, 0, 0, 0]  # (B, M)
        norm2 = (vals * vals).sum(1) - ((vals @ self.one_hot) ** 2 / self.count).sum(1)
        return (vals @ self.ref) / norm2.clamp_min(1e-24).sqrt()

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        F = torch.as_tensor(np.asarray(frames), dtype=torch.float32)
        ops = (F[:, None] @ self.gens[None] @ F[:, None].transpose(2, 3)).reshape(-1, 3, 3)
        out = torch.cat([self._correlations(ops[s : s + self.chunk]) for s in range(0, len(ops), self.chunk)])
        return out.reshape(len(F), len(self.gens)).mean(1).numpy().astype(np.float64)


def axis_frames(step_deg: float) -> np.ndarray:
    """Frames (M, 3, 3) taking z to near-uniform directions of the upper hemisphere."""
    return np.array([frame_from_axis(d) for d in hemisphere(step_deg)])


def distinct_frames(frames: np.ndarray, symbol: str) -> np.ndarray:
    """The frames of a grid that are not equivalent under the group: F is kept where F itself,
    of all F·S, is the nearest to the identity (so about 1/K of an SO(3) grid remains)."""
    ops = point_group(symbol)
    traces = np.einsum("nij,kji->nk", frames, ops)  # trace(F·Sₖ)
    return frames[traces.argmax(1) == 0]


_DIRS = np.concatenate([np.eye(3), -np.eye(3), np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T / np.sqrt(3)])


def _axis_frame(F: np.ndarray) -> np.ndarray:
    """A Cn frame's canonical form: the smallest rotation taking z to its axis F·z (z ≥ 0)."""
    return frame_from_axis(F[:, 2] if F[2, 2] >= 0 else -F[:, 2])


def refine_frame(score: _SelfMatch, F: np.ndarray, step_deg: float, min_step_deg: float, max_iter: int = 80,
                 axis_only: bool = False):
    """Local search: F ← exp(step·e)·F over 14 axes e while better, else halve the step → (F, score).
    ``axis_only`` (Cn): frames are reduced to their axis, so turns about it change nothing."""
    best = score(F[None])[0]
    for _ in range(max_iter):
        if step_deg < min_step_deg:
            break
        cand = roma.rotvec_to_rotmat(torch.as_tensor(_DIRS * np.deg2rad(step_deg))).numpy() @ F
        if axis_only:
            cand = np.array([_axis_frame(c) for c in cand])
        s = score(cand)
        k = int(np.argmax(s))
        if s[k] > best + 1e-7:
            F, best = cand[k], s[k]
        else:
            step_deg /= 2
    return F, best


def _distinct_best(frames: np.ndarray, s: np.ndarray, k: int, min_deg: float) -> list[int]:
    chosen: list[int] = []
    for i in np.argsort(-s):
        cos = [(np.trace(frames[i].T @ frames[j]) - 1) / 2 for j in chosen]
        if all(np.rad2deg(np.arccos(np.clip(c, -1, 1))) > min_deg for c in cos):
            chosen.append(int(i))
        if len(chosen) == k:
            break
    return chosen


def coarse_frames(vol: np.ndarray, symbol: str, step_deg: float, n_candidates: int = 3,
                  box: int = 24, res_px: float = 2.0) -> list[np.ndarray]:
    """The ``n_candidates`` best distinct frames of a coarse search on a box-``box`` copy.
    Cn, Dn (n ≥ 2): the n-fold's direction over the hemisphere, and for Dn then the in-plane
    angle of the two-fold (0 … 180°/n) about each of the best few; else a grid over SO(3)
    less the frames the group makes equivalent."""
    kind, n = parse_symmetry(symbol)
    small = np.asarray(vol, dtype=np.float32)
    box = min(box, small.shape[0])
    if kind in ("C", "D") and n >= 2:
        frames = axis_frames(step_deg)
        s = _SelfMatch(small, box, res_px, f"C{n}", chunk=256)(frames)
        starts = [frames[i] for i in _distinct_best(frames, s, n_candidates, 2 * step_deg)]
        if kind == "C":
            return starts
        psi = np.deg2rad(np.arange(0.0, 180.0 / n, step_deg / 2))
        turns = np.array([axis_rotation((0.0, 0.0, 1.0), p) for p in psi])
        dn = _SelfMatch(small, box, res_px, symbol, chunk=256)
        out = []
        for F in starts:
            cand = F @ turns
            out.append(cand[int(np.argmax(dn(cand)))])
        return out
    grid = distinct_frames(rotation_grid(step_deg), symbol)
    s = _SelfMatch(small, box, res_px, symbol, chunk=256)(grid)
    return [grid[i] for i in _distinct_best(grid, s, n_candidates, 2 * step_deg)]


def find_symmetry_frame(vol: np.ndarray, symbol: str, coarse_step_deg: float = 8.0, fine_box: int = 48,
                        n_candidates: int = 3, precise: bool = True) -> SymmetryFit:
    """The orientation of group ``symbol`` in map ``vol`` (box L, (z, y, x)): ``coarse_frames``,
    local searches from each down to 1° on a box-32 copy, then from the best on a copy of box
    ≤ ``fine_box`` low-passed to 1.5 px, down to 0.1° (with ``precise``; else the frame is
    good to about a degree).
    For Cn the frame is the smallest rotation taking z to the axis (the in-plane angle is free)."""
    kind, n = parse_symmetry(symbol)
    if kind == "C" and n == 1:
        return SymmetryFit(symbol, np.eye(3), 1.0)
    vol = np.asarray(vol, dtype=np.float32)
    starts = coarse_frames(vol, symbol, coarse_step_deg, n_candidates)
    middle = _SelfMatch(vol, min(vol.shape[0], 32), 2.0, symbol, chunk=64)
    cn = kind == "C"
    F, _ = max((refine_frame(middle, F0, coarse_step_deg / 2, 1.0, axis_only=cn) for F0 in starts), key=lambda r: r[1])
    if precise:
        F, _ = refine_frame(_SelfMatch(vol, min(vol.shape[0], fine_box), 1.5, symbol, chunk=32), F, 1.0, 0.1, axis_only=cn)
    return SymmetryFit(symbol, F, symmetry_score(vol, symbol, F))


def align_symmetry(vol: np.ndarray, symbol: str) -> tuple[np.ndarray, SymmetryFit]:
    """The map turned onto group ``symbol``'s standard orientation (float32), and the fit."""
    fit = find_symmetry_frame(vol, symbol)
    return rotate_to_standard(vol, fit.frame), fit


def cylindrical_average(vol: np.ndarray, axis, n_turns: int = 36) -> np.ndarray:
    """The map averaged over ``n_turns`` rotations about ``axis`` through the centre."""
    F = frame_from_axis(axis)
    turns = np.array([axis_rotation((0.0, 0.0, 1.0), 2 * np.pi * k / n_turns) for k in range(n_turns)])
    ops = torch.as_tensor(F @ turns @ F.T, dtype=torch.float32)
    v = torch.as_tensor(np.asarray(vol, dtype=np.float32))
    out = torch.zeros_like(v)
    for s in range(0, n_turns, 8):
        out += _rotate_batch(v, ops[s : s + 8]).sum(0)
    return (out / n_turns).numpy()


def check_symmetry(vol: np.ndarray, max_n: int = 12, box: int = 40) -> list[tuple[str, float, np.ndarray]]:
    """Scores of Cn (n = 2 … ``max_n``) and Dn (n = 2 … ``max_n``) for a map in any orientation:
    [(symbol, score, frame F)]. Each group's frame is searched (``find_symmetry_frame``) on a
    copy of box ≤ ``box``; a Cn score is the symmetry score of the map less its cylindrical
    average about the found axis, a Dn score the plain symmetry score; both are 1 for a map with
    that symmetry and well below for one without."""
    vol = np.asarray(vol, dtype=np.float32)
    small = _prepare(vol, min(vol.shape[0], box), 1.5).numpy()
    out = []
    for kind in ("C", "D"):
        for n in range(2, max_n + 1):
            symbol = f"{kind}{n}"
            fit = find_symmetry_frame(small, symbol, n_candidates=1, precise=False)
            if kind == "C":
                score = symmetry_score(small - cylindrical_average(small, fit.frame[:, 2]), symbol, fit.frame)
            else:
                score = fit.score
            out.append((symbol, score, fit.frame))
    return out
