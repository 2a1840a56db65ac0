"""Check a particle set (.star, .cs or .mrcs) and list every problem before training.

Prints the particle count, box, pixel size, optics groups, CTF ranges, whether poses are
present, a polarity guess and a memory estimate, then every problem found at once (missing
or truncated stacks, indices past the end, NaN images in a sample, mixed box sizes, ...),
one line each naming the file and the fix. Exit code 0 when there is no problem, 2 otherwise.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from cryoai.data.particles import load_particles
from cryoai.data.polarity import guess_polarity
from cryoai.physics.ctf import CTFParams

N_SAMPLE = 200  # images read to look for NaN and guess the polarity
MAX_LISTED = 50  # problems printed before summarising the rest


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("particles", help="particle file: RELION .star, cryoSPARC .cs or an .mrcs stack")
    parser.add_argument("--apix", type=float, default=None, help="pixel size in Å (overrides the metadata)")
    parser.add_argument("--datadir", default=None, help="folder the image paths are relative to")
    parser.add_argument("--seed", type=int, default=0, help="seed for the image sample (default 0)")


def main(args: argparse.Namespace) -> int:
    logger = logging.getLogger("cryoai.data.particles")
    level = logger.level
    logger.setLevel(logging.ERROR)  # its warnings are printed below with the report
    try:
        particles = load_particles(args.particles, apix=args.apix, datadir=args.datadir)
    finally:
        logger.setLevel(level)
    n, box, apix = len(particles), particles.box, particles.apix
    print(f"particles:      {particles.path}")
    print(f"count:          {n}")
    print(f"box:            {box} px" if box else "box:            unknown (no image size in the metadata, no stack found)")
    print(f"pixel size:     {apix:.4g} Å" + (f" (box {box * apix:.1f} Å, Nyquist {2 * apix:.2f} Å)" if box else ""))
    print(f"optics groups:  {_optics_summary(particles)}")
    print(f"CTF:            {_ctf_summary(particles.ctf)}")
    poses = "rotations " + ("present" if particles.rotations is not None else "absent")
    poses += ", origins " + ("present" if particles.origins_A is not None else "absent")
    print(f"poses:          {poses}")

    problems, ok = particles.stack.scan()
    if not box and not problems:
        problems.append(f"{particles.path}: box size unknown (no rlnImageSize and no readable stack); "
                        f"restore the stacks or pass --datadir")
    stacks = len(np.unique(particles.stack.file_ids))
    ram = n * box * box * 4
    print(f"stacks:         {stacks} file(s), {_size(particles.stack.disk_bytes())} on disk; "
          f"{_size(ram)} in RAM if loaded fully (float32)")

    good = np.flatnonzero(ok)
    sample = np.sort(np.random.default_rng(args.seed).choice(good, size=min(N_SAMPLE, len(good)), replace=False))
    finite = np.ones(len(sample), dtype=bool)
    for start in range(0, len(sample), 64):
        rows = sample[start:start + 64]
        images = particles.stack.images(rows, check_finite=False)
        finite[start:start + 64] = np.isfinite(images).all(axis=(1, 2))
    for row in sample[~finite]:
        f, i = particles.stack.files[particles.stack.file_ids[row]], particles.stack.indices[row]
        problems.append(f"{f}: image {i + 1} (particle {row}) holds NaN or infinite pixels; remove that "
                        f"particle or re-extract the stack")
    if len(sample[finite]):
        clean = particles.subset(sample[finite])
        polarity = guess_polarity(clean, n_sample=N_SAMPLE, seed=args.seed)
        meaning = "molecule brighter than background, as RELION extracts" if polarity == "bright" else \
            "molecule darker than background: invert the contrast for training"
        print(f"polarity guess: {polarity} ({meaning}; from {len(sample[finite])} images)")
    else:
        print("polarity guess: not possible (no readable images)")
    print(f"images checked: {len(sample)} of {n} for NaN/inf")

    for note in particles.notes:
        print(f"warning: {particles.path}: {note}")
    if not problems:
        print("no problems found")
        return 0
    print(f"{len(problems)} problem(s):")
    for message in problems[:MAX_LISTED]:
        print(f"problem: {message}")
    if len(problems) > MAX_LISTED:
        print(f"problem: ... and {len(problems) - MAX_LISTED} more of the kinds above")
    return 2


def _optics_summary(particles) -> str:
    optics = particles.optics
    if optics is None:
        return "none (no data_optics block)"
    names = optics.get("rlnOpticsGroupName", optics.get("rlnOpticsGroup"))
    return f"{len(optics)} ({', '.join(str(x) for x in names)})"


def _ctf_summary(ctf: CTFParams | None) -> str:
    if ctf is None:
        return "none"
    defocus = np.concatenate([ctf.defocus_u_A, ctf.defocus_v_A]) / 1e4
    lo, med, hi = np.min(defocus), np.median(defocus), np.max(defocus)
    parts = [f"defocus {lo:.3g}/{med:.3g}/{hi:.3g} µm (min/median/max)"]
    for values, label, unit in ((ctf.voltage_kV, "voltage", " kV"), (ctf.cs_mm, "Cs", " mm"),
                                (ctf.amp_contrast, "amp. contrast", "")):
        values = np.unique(values)
        parts.append(f"{label} " + "/".join(f"{v:.4g}" for v in values[:4]) + unit + ("..." if len(values) > 4 else ""))
    phase = ctf.phase_shift_deg
    if np.any(phase != 0):
        parts.append(f"phase shift {phase.min():.3g}–{phase.max():.3g} deg")
    return ", ".join(parts)


def _size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n_bytes < 1024 or unit == "TiB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1024
    return ""
