"""How accurately ``align-symmetry`` finds a group's axes (issue 13 target: ≤ 2°), on CPU.

Maps: 3J9G (C6 about z, from its potential map) and apoferritin (O, from the Cα model
``apoferritin_ca_apo_sym.pdb``), and the built-in phantom made C6 and O by symmetrising. Each
map's own frame F0 is found first (3J9G: its axis should come out along z); the map is then
turned by --trials random rotations Q, and the frame found in the turned map is compared with
Q·F0: for Cn the angle between the axes, otherwise the smallest angle between F and Q·F0·S
over the group. Prints one row per trial and the median/max per map.

Usage: python benchmarks/symmetry.py [--trials 5] [--box 64] [--seed 0]
Run it alone on the machine: timings mean nothing with other jobs beside it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from cryoai.eval.align import transform_map
from cryoai.eval.map_symmetry import symmetrise_map
from cryoai.eval.symmetry_search import find_symmetry_frame
from cryoai.geometry.rotations import geodesic_distance_deg, random_rotations
from cryoai.geometry.symmetry import parse_symmetry, point_group
from cryoai.io.mrc import read_map
from cryoai.phantom import phantom_map
from cryoai.simulate import model_to_map, resample_map

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "maps_models"


def frame_error_deg(F: np.ndarray, F_true: np.ndarray, symbol: str) -> float:
    """Angle between two frames of group ``symbol``: the axes for Cn, else modulo the group."""
    if parse_symmetry(symbol)[0] == "C":
        return float(np.rad2deg(np.arccos(min(1.0, abs(F[:, 2] @ F_true[:, 2])))))
    ops = point_group(symbol)
    return float(geodesic_distance_deg(np.broadcast_to(F, ops.shape), F_true @ ops).min())


def maps(box: int) -> list[tuple[str, str, np.ndarray]]:
    out = []
    path = DATA / "3j9g_potential_ps4_4.mrc"
    if path.exists():
        vol, apix = read_map(path)
        out.append(("3J9G", "C6", resample_map(vol, apix, box, apix * vol.shape[0] / box)))
    path = DATA / "apoferritin_ca_apo_sym.pdb"
    if path.exists():
        out.append(("apoferritin", "O", model_to_map(path, box, 160.0 / box)))  # ~130 Å across
    sub = np.roll(phantom_map(box, 1.0, seed=3, radius_fraction=0.12), (box // 12, box // 10, box // 4), axis=(0, 1, 2))
    out += [("phantom", g, symmetrise_map(sub, g)) for g in ("C6", "O")]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--box", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{'map':12s} {'group':5s} {'trial':>5s} {'error °':>8s} {'score':>6s} {'s':>6s}")
    for name, symbol, vol in maps(args.box):
        t = time.time()
        F0 = find_symmetry_frame(vol, symbol)
        axis = ", ".join(f"{x:+.3f}" for x in F0.frame[:, 2])
        print(f"{name:12s} {symbol:5s} {'own':>5s} {'':8s} {F0.score:6.3f} {time.time() - t:6.1f}  frame z axis ({axis})")
        errors = []
        for trial, Q in enumerate(random_rotations(args.trials, rng)):
            t = time.time()
            fit = find_symmetry_frame(transform_map(vol, Q), symbol)
            errors.append(frame_error_deg(fit.frame, Q @ F0.frame, symbol))
            print(f"{name:12s} {symbol:5s} {trial:5d} {errors[-1]:8.2f} {fit.score:6.3f} {time.time() - t:6.1f}")
        print(f"{name:12s} {symbol:5s} median {np.median(errors):.2f}°, max {np.max(errors):.2f}° over {len(errors)} rotations")


if __name__ == "__main__":
    main()
