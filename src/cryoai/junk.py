"""Synthetic junk for the simulator: what a particle picker also picks.

Four kinds, each imaged through the same microscope as the particles (CTF, origin shift):
- ``ice``: a cluster of 3–12 Gaussian blobs (ice crystals, aggregates), of about the molecule's mass;
- ``empty``: nothing (a pick on empty ice; the image is noise only);
- ``fragment``: a part of the molecule (``plane_fragments`` for a map; the simulator makes atomic
  fragments from a model), in a random pose;
- ``neighbour``: a whole copy of the molecule, off-centre, entering at the box edge.
Projections here are real-space images before the CTF, in the map's density units per pixel.
"""

from __future__ import annotations

import numpy as np
import torch

from cryoai.geometry.grids import fft2_centered, freq_grid_2d, ifft2_centered
from cryoai.geometry.rotations import random_rotations
from cryoai.physics.ctf import CTFParams, ctf
from cryoai.physics.image_model import modulate, render_images

JUNK_KINDS = ("ice", "empty", "fragment", "neighbour")


def assign_kinds(n: int, fraction: float, kinds: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """Kind of each of n rows: round(fraction·n) random rows junk, their kinds drawn uniformly
    from ``kinds``; the others "particle"."""
    labels = np.full(n, "particle", dtype=object)
    n_junk = int(round(fraction * n))
    if n_junk:
        rows = rng.choice(n, n_junk, replace=False)
        labels[rows] = np.asarray(kinds, dtype=object)[rng.integers(len(kinds), size=n_junk)]
    return labels


def apply_ctf(projections: np.ndarray, apix: float, ctf_params: CTFParams | None,
              origins_A: torch.Tensor | None) -> np.ndarray:
    """Images (B, L, L) of real-space projections through the CTF and the origin shift, the
    image model's ``modulate`` applied to their transforms."""
    box = projections.shape[-1]
    freqs = freq_grid_2d(box).reshape(-1, 2).to(torch.float64)
    spectra = fft2_centered(torch.from_numpy(np.asarray(projections, dtype=np.float64))).reshape(len(projections), -1)
    ctf_values = ctf(freqs / apix, ctf_params) if ctf_params is not None else None
    origins_px = origins_A / apix if origins_A is not None else None
    spectra = modulate(spectra, freqs, ctf_values, origins_px)
    return ifft2_centered(spectra.reshape(-1, box, box)).numpy()


def ice_projection(box: int, apix: float, mass: float, rng: np.random.Generator) -> np.ndarray:
    """(L, L) projection of a cluster of 3–12 Gaussian blobs (σ 4–12 Å, centres spread 15 Å
    about a point within 10 Å of the box centre), of total mass ``mass`` × U(0.5, 2), blobs of
    equal density (mass ∝ σ³)."""
    n_blobs = int(rng.integers(3, 13))
    sigma = rng.uniform(4.0, 12.0, n_blobs) / apix
    centre = rng.normal(0.0, 10.0 / apix, 2) + rng.normal(0.0, 15.0 / apix, (n_blobs, 2))
    weight = sigma**3 / (sigma**3).sum() * mass * rng.uniform(0.5, 2.0)
    g = np.arange(box) - box // 2
    y, x = np.meshgrid(g, g, indexing="ij")
    image = np.zeros((box, box))
    for (cx, cy), s, w in zip(centre, sigma, weight):
        image += w / (2 * np.pi * s**2) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s**2))
    return image


def neighbour_projection(volume_spectrum, rotation: np.ndarray, box: int, apix: float,
                         rng: np.random.Generator) -> np.ndarray:
    """(L, L) projection of the molecule at ``rotation`` whose centre lies U(0.75, 1)·L/2 pixels
    from the box centre in a random direction: rendered centred in a 2L box, then the L window
    cut out (no wrap-around)."""
    big = render_images(volume_spectrum, torch.from_numpy(rotation[None]), 2 * box, apix)[0].numpy()
    distance = rng.uniform(0.75, 1.0) * box / 2
    angle = rng.uniform(0.0, 2 * np.pi)
    dx, dy = np.rint(distance * np.cos(angle)).astype(int), np.rint(distance * np.sin(angle)).astype(int)
    # small pixel i shows big pixel i − L//2 + L − d: the molecule (big centre L) at L//2 + d
    x0, y0 = box - box // 2 - dx, box - box // 2 - dy
    return big[y0 : y0 + box, x0 : x0 + box]


def plane_fragments(volume: np.ndarray, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``k`` parts of a map: the density on one side of a random plane (random normal, passing
    within L/16 voxels of the centre), with a 2-voxel raised-cosine edge."""
    box = volume.shape[-1]
    g = np.arange(box) - box // 2
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    parts = []
    for _ in range(k):
        normal = rng.standard_normal(3)
        normal /= np.linalg.norm(normal)
        height = x * normal[0] + y * normal[1] + z * normal[2] - rng.uniform(-1.0, 1.0) * box / 16
        keep = 0.5 + 0.5 * np.sin(np.pi / 2 * np.clip(height / 2.0, -1.0, 1.0))
        parts.append((volume * keep).astype(np.float32))
    return parts


def junk_images(kinds: np.ndarray, neighbours: np.ndarray, rows: np.ndarray, images: np.ndarray, volume_spectrum,
                fragment_spectra: list, rotations: np.ndarray, ctf_params: CTFParams | None, origins: np.ndarray,
                apix: float, mass: float, rng: np.random.Generator) -> np.ndarray:
    """``images`` (a chunk of rows ``rows``) with each junk row replaced by the image of its kind,
    and a neighbour (another copy at a random pose) added to the particles flagged in ``neighbours``."""
    box = images.shape[-1]
    for j, row in enumerate(rows):
        kind = kinds[row]
        ctf_row = ctf_params[row : row + 1].to_torch(torch.float64) if ctf_params is not None else None
        origin = torch.from_numpy(origins[row : row + 1])
        if kind == "particle":
            if neighbours[row]:
                other = random_rotations(1, rng)[0]
                projection = neighbour_projection(volume_spectrum, other, box, apix, rng)
                images[j] += apply_ctf(projection[None], apix, ctf_row, None)[0]
        elif kind == "empty":
            images[j] = 0.0
        elif kind == "fragment":
            spectrum = fragment_spectra[int(rng.integers(len(fragment_spectra)))]
            images[j] = render_images(spectrum, torch.from_numpy(rotations[row : row + 1]), box, apix, ctf_row, origin)[0].numpy()
        elif kind == "ice":
            images[j] = apply_ctf(ice_projection(box, apix, mass, rng)[None], apix, ctf_row, origin)[0]
        else:  # neighbour: placed by its own offset, not by the row's origin
            projection = neighbour_projection(volume_spectrum, rotations[row], box, apix, rng)
            images[j] = apply_ctf(projection[None], apix, ctf_row, None)[0]
    return images
