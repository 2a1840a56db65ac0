"""Synthetic particle sets: the image formation model applied to a known map.

Writes ``particles.mrcs`` (float32, in chunks), ``particles.star`` (RELION 3.1 with optics,
CTF and the ground-truth rlnAngleRot/Tilt/Psi and rlnOriginX/YAngst: what a user's STAR holds),
``truth.star`` (the same rows with the defocus that made each image, its contrast scale
rlnCtfScalefactor, the envelope rlnCtfBfactor and its junk kind), ``truth.mrc``, and with
coloured noise ``truth_noise_spectrum.txt``. SNR follows CONVENTIONS.md: mean over the true
particles' images of the variance of the noise-free image over the whole box, divided by the
noise variance per pixel (white or coloured); the signal variance is measured on the first chunk.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from cryoai.errors import InputError
from cryoai.geometry.grids import fft2_centered, fft3_centered, freq_grid_2d, ifft2_centered, ifft3_centered
from cryoai.geometry.rotations import matrix_to_euler, random_rotations, rotations_near_view
from cryoai.io.atomic import atomic_path
from cryoai.io.columns import STAR_ANGLES, STAR_CTF, STAR_ORIGINS_A
from cryoai.io.mrc import write_map
from cryoai.io.star import write_star
from cryoai.physics.ctf import CTFParams
from cryoai.physics.image_model import render_images
from cryoai.junk import JUNK_KINDS, assign_kinds, junk_images, plane_fragments
from cryoai.physics.noise import coloured_noise, scaled_to_variance, sigma_for_snr, white_noise
from cryoai.physics.slicing import fourier_map

TRUTH_STAR = "truth.star"  # every row's truth: pose, origin, the CTF that made it, contrast, junk kind
TRUTH_NOISE_SPECTRUM = "truth_noise_spectrum.txt"  # (shell, p) of coloured noise, physics/noise.py's convention
JUNK_KIND_COLUMN = "cryoaiJunkKind"  # in truth.star: "particle", or a kind of junk.JUNK_KINDS
NEIGHBOUR_COLUMN = "cryoaiNeighbour"  # in truth.star: 1 where a neighbour enters a true particle's box


@dataclass
class Microscope:
    """Optics and defocus distribution of a simulated data set."""

    voltage_kV: float = 300.0
    cs_mm: float = 2.7
    amp_contrast: float = 0.1
    defocus_median_A: float = 15000.0  # log-normal mean defocus
    defocus_log_sigma: float = 0.3
    astigmatism_sigma_A: float = 200.0  # half-difference dfU − dfV ~ |N(0, σ)|


class RunningStats:
    """Min, max, mean and RMS deviation of a stack seen chunk by chunk (MRC header fields)."""

    def __init__(self):
        self.count, self.total, self.total_sq = 0, 0.0, 0.0
        self.low, self.high = math.inf, -math.inf

    def add(self, chunk: np.ndarray) -> None:
        c = chunk.astype(np.float64)
        self.count += c.size
        self.total += float(c.sum())
        self.total_sq += float((c * c).sum())
        self.low, self.high = min(self.low, float(c.min())), max(self.high, float(c.max()))

    def write_to(self, header) -> None:
        mean = self.total / self.count
        header.dmin, header.dmax, header.dmean = self.low, self.high, mean
        header.rms = math.sqrt(max(self.total_sq / self.count - mean**2, 0.0))


def read_junk_kinds(path: str | os.PathLike) -> pd.DataFrame | None:
    """rlnImageName and junk kind of every row of a simulation's truth.star, or None when the file
    has no junk-kind column (a truth file from elsewhere)."""
    from cryoai.io.star import read_star

    try:
        blocks = read_star(path)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable STAR file ({e}); give the simulation's truth.star") from None
    table = blocks.get("particles")
    if not isinstance(table, pd.DataFrame) or not {"rlnImageName", JUNK_KIND_COLUMN} <= set(table.columns):
        return None
    return table[["rlnImageName", JUNK_KIND_COLUMN]].reset_index(drop=True)


def resample_map(volume: np.ndarray, apix_in: float, box: int, apix: float) -> np.ndarray:
    """Resample a map (z, y, x) to ``box`` voxels of ``apix`` Å about the centre voxel.

    Low-passes to the new Nyquist first when coarsening, then interpolates trilinearly.
    """
    if abs(apix_in - apix) < 1e-6 * apix and volume.shape[0] == box:
        return volume.astype(np.float32)
    vol = torch.as_tensor(volume, dtype=torch.float32)
    size = vol.shape[-1]
    if apix > apix_in:  # remove what the coarser grid cannot hold
        f = (torch.arange(size) - size // 2) / (size * apix_in)
        fz, fy, fx = torch.meshgrid(f, f, f, indexing="ij")
        keep = (fx**2 + fy**2 + fz**2) <= (0.5 / apix) ** 2
        spectrum = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(vol)))
        vol = torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(spectrum * keep))).real
    # target voxel centres in input voxel indices, then normalised for grid_sample
    t = (torch.arange(box, dtype=torch.float32) - box // 2) * (apix / apix_in) + size // 2
    tz, ty, tx = torch.meshgrid(t, t, t, indexing="ij")
    grid = torch.stack([tx, ty, tz], dim=-1) / (size - 1) * 2 - 1
    out = F.grid_sample(vol[None, None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[0, 0].numpy()


def model_to_map(path: str | os.PathLike, box: int, apix: float, oversample: int = 3,
                 atoms: tuple[int, int] | None = None) -> np.ndarray:
    """Electron scattering potential of an atomic model (PDB/mmCIF) via gemmi, centred on
    the atoms' mean position; computed on a grid ``oversample`` times finer and Fourier-cropped,
    so it is band-limited to Nyquist without aliasing; (z, y, x) float32.
    ``atoms`` = (start, stop) keeps only that contiguous range of the heavy atoms in file order
    (a fragment, centred on its own atoms)."""
    import gemmi

    try:
        st = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError, OSError) as e:
        raise InputError(f"{path}: not a readable PDB/mmCIF model ({e}); give a .pdb or .cif file") from None
    st.setup_entities()
    st.remove_ligands_and_waters()
    st.remove_hydrogens()
    if atoms is not None:
        keep_atom_range(st, *atoms)
    xyz = np.array([a.pos.tolist() for ch in st[0] for res in ch for a in res])
    if len(xyz) == 0:
        raise InputError(f"{path}: the model has no atoms; give a model with coordinates")
    span = np.ptp(xyz, axis=0).max()
    if span > box * apix:
        raise InputError(f"{path}: the model spans {span:.0f} Å but the box is {box * apix:.0f} Å; raise --box or --apix")
    fine = oversample * box  # sample finely, then cut at Nyquist: a band-limited, unaliased map
    shift = gemmi.Position(*((fine // 2) * apix / oversample - xyz.mean(axis=0)))  # centre voxel of the fine grid
    for ch in st[0]:
        for res in ch:
            for atom in res:
                atom.pos = atom.pos + shift
    st.spacegroup_hm = "P 1"
    st.cell = gemmi.UnitCell(box * apix, box * apix, box * apix, 90, 90, 90)
    dc = gemmi.DensityCalculatorE()
    dc.d_min = 2 * apix / oversample
    dc.set_grid_cell_and_spacegroup(st)
    dc.grid.set_size(fine, fine, fine)
    dc.add_model_density_to_grid(st[0])
    dc.grid.symmetrize_sum()
    dense = torch.from_numpy(np.array(dc.grid, copy=True).transpose(2, 1, 0).astype(np.float32))
    # cropping the centred spectrum maps fine voxel fine//2 onto coarse voxel box//2
    spectrum = fft3_centered(dense)
    start = fine // 2 - box // 2
    cropped = spectrum[start : start + box, start : start + box, start : start + box] / oversample**3
    f = torch.arange(box) - box // 2
    fz, fy, fx = torch.meshgrid(f, f, f, indexing="ij")
    # a Gaussian envelope (gain e⁻² at Nyquist, like a map at about that resolution) with a
    # raised-cosine edge from 0.8 to 1 × Nyquist: no power beyond Nyquist and little ringing
    r = torch.sqrt((fx**2 + fy**2 + fz**2).float()) / (box / 2)
    edge = torch.where(r <= 0.8, 1.0, 0.5 + 0.5 * torch.cos(torch.pi * torch.clamp((r - 0.8) / 0.2, 0, 1)))
    cropped = cropped * edge * torch.exp(-2.0 * r**2)
    return ifft3_centered(cropped).numpy().astype(np.float32)


def count_atoms(path: str | os.PathLike) -> int:
    """Number of heavy atoms (no ligands, waters or hydrogens) of an atomic model, as ``model_to_map`` sees it."""
    import gemmi

    st = gemmi.read_structure(str(path))
    st.setup_entities()
    st.remove_ligands_and_waters()
    st.remove_hydrogens()
    return sum(len(res) for ch in st[0] for res in ch)


def keep_atom_range(st, start: int, stop: int) -> None:
    """Delete from a gemmi structure's first model every atom outside [start, stop) in file order."""
    index = 0
    for ch in st[0]:
        for res in ch:
            inside = [start <= index + i < stop for i in range(len(res))]
            index += len(res)
            for i in reversed(range(len(inside))):
                if not inside[i]:
                    del res[i]


def model_fragments(path: str | os.PathLike, box: int, apix: float, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``k`` maps of fragments of an atomic model: each a random contiguous 25–60 % of its atoms."""
    total = count_atoms(path)
    parts = []
    for _ in range(k):
        length = max(1, int(rng.uniform(0.25, 0.6) * total))
        start = int(rng.integers(0, total - length + 1))
        parts.append(model_to_map(path, box, apix, atoms=(start, start + length)))
    return parts


def draw_ctf(n: int, scope: Microscope, rng: np.random.Generator) -> CTFParams:
    """CTF parameters of n particles: log-normal defocus, random astigmatism, the scope's optics."""
    mean = scope.defocus_median_A * np.exp(scope.defocus_log_sigma * rng.standard_normal(n))
    half_astig = np.abs(scope.astigmatism_sigma_A * rng.standard_normal(n))
    angle = rng.uniform(0, 180, n)
    return CTFParams(defocus_u_A=mean + half_astig, defocus_v_A=mean - half_astig, defocus_angle_deg=angle,
                     voltage_kV=np.full(n, float(scope.voltage_kV)), cs_mm=np.full(n, float(scope.cs_mm)),
                     amp_contrast=np.full(n, float(scope.amp_contrast)), phase_shift_deg=np.zeros(n),
                     bfactor_A2=np.zeros(n))


@dataclass
class Realism:
    """What real particle stacks carry beyond the ideal image model; the defaults add nothing
    (and draw nothing from the random stream, so default simulations stay bit-identical)."""

    junk_fraction: float = 0.0  # fraction of the rows that are junk
    junk_kinds: tuple[str, ...] = JUNK_KINDS  # drawn uniformly among these
    fragments: list[np.ndarray] | None = None  # maps of molecule parts; default: plane cuts of the map
    bfactor_A2: float = 0.0  # envelope exp(−B s²/4) on every image
    contrast_sd: float = 0.0  # per-row amplitude 1 + S·N(0, 1), clipped to ≥ 0.05
    noise_psd: np.ndarray | None = None  # relative radial noise spectrum p[r] (physics/noise.py); None = white
    defocus_error_A: float = 0.0  # the STAR's defocus U and V = the true ones + N(0, E), one draw per row
    preferred_view: tuple[float, float] | None = None  # (rot, tilt) in degrees
    preferred_fraction: float = 0.0  # fraction of rows viewed within preferred_spread_deg of it
    preferred_spread_deg: float = 20.0
    neighbour_fraction: float = 0.0  # fraction of the true particles with a neighbour entering the box


def bfactor_envelope(images: np.ndarray, apix: float, bfactor_A2: float) -> np.ndarray:
    """Images (B, L, L) times exp(−B s²/4) in Fourier space, s = |k| in 1/Å (physics/ctf.py's B)."""
    box = images.shape[-1]
    s2 = (freq_grid_2d(box).to(torch.float64) / apix).square().sum(-1)
    return ifft2_centered(fft2_centered(torch.from_numpy(images.astype(np.float64))) * torch.exp(-bfactor_A2 * s2 / 4)).numpy()


def simulate(
    volume: np.ndarray,
    apix: float,
    n: int,
    out_dir: str | os.PathLike,
    snr: float = math.inf,
    shift_std_A: float = 0.0,
    use_ctf: bool = True,
    seed: int = 0,
    scope: Microscope | None = None,
    chunk: int = 1000,
    progress: bool = True,
    realism: Realism | None = None,
) -> dict:
    """Simulate ``n`` particles of ``volume`` (a (L, L, L) map at ``apix`` Å) into ``out_dir``.

    ``realism`` adds junk, envelope, contrast, coloured noise, defocus error and preferred views,
    drawn from a second random stream; the truth of every row goes to ``truth.star``.
    Returns a summary dict (counts, noise sigma, images/s is for the caller to time).
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create output folder {out}: {e.strerror}; choose a writable -o") from None
    box = volume.shape[-1]
    rng = np.random.default_rng(seed)
    scope = scope or Microscope()
    real = realism or Realism()
    rotations = random_rotations(n, rng)
    origins = shift_std_A * rng.standard_normal((n, 2))
    ctf_params = draw_ctf(n, scope, rng) if use_ctf else None
    volume_spectrum = fourier_map(torch.as_tensor(volume), pad=2)

    extra = np.random.default_rng([seed, 1])  # realism's own stream: the default draws above stay as they were
    if real.preferred_view is not None and real.preferred_fraction > 0:
        rows = extra.choice(n, int(round(real.preferred_fraction * n)), replace=False)
        rotations[rows] = rotations_near_view(len(rows), *real.preferred_view, real.preferred_spread_deg, extra)
    kinds = assign_kinds(n, real.junk_fraction, real.junk_kinds, extra)
    contrast = np.ones(n)
    if real.contrast_sd > 0:
        contrast = np.clip(1.0 + real.contrast_sd * extra.standard_normal(n), 0.05, None)
    star_ctf = ctf_params
    if use_ctf and real.defocus_error_A > 0:
        error = real.defocus_error_A * extra.standard_normal(n)
        star_ctf = replace(ctf_params, defocus_u_A=ctf_params.defocus_u_A + error,
                           defocus_v_A=ctf_params.defocus_v_A + error)
    fragment_spectra = []
    if "fragment" in set(kinds):
        parts = real.fragments if real.fragments is not None else plane_fragments(volume, 8, extra)
        fragment_spectra = [fourier_map(torch.as_tensor(part), pad=2) for part in parts]
    mass = float(volume.sum())
    neighbours = np.zeros(n, bool)
    if real.neighbour_fraction > 0:
        neighbours = (kinds == "particle") & (extra.random(n) < real.neighbour_fraction)

    noise_sigma = 0.0
    noise_psd = None
    stats = RunningStats()
    stack_path = out / "particles.mrcs"
    with atomic_path(stack_path) as tmp_stack:
        # the header (and a sparse file of full size) from mrcfile; the images by plain writes,
        # chunk by chunk, so memory stays that of one chunk whatever n is
        with mrcfile.new_mmap(tmp_stack, shape=(n, box, box), mrc_mode=2, overwrite=True) as mrc:
            mrc.voxel_size = apix
            data_offset = mrc.header.nbytes + mrc.extended_header.nbytes
        with open(tmp_stack, "r+b") as f:
            for start in tqdm(range(0, n, chunk), desc="simulate", unit="chunk", disable=not progress):
                sl = slice(start, min(start + chunk, n))
                with torch.no_grad():
                    images = render_images(
                        volume_spectrum,
                        torch.from_numpy(rotations[sl]),
                        box,
                        apix,
                        ctf_params[sl].to_torch(torch.float64) if use_ctf else None,
                        torch.from_numpy(origins[sl]),
                    ).numpy()
                    if real.junk_fraction > 0 or real.neighbour_fraction > 0 or real.bfactor_A2 > 0 or real.contrast_sd > 0:
                        images = junk_images(kinds, neighbours, np.arange(n)[sl], images, volume_spectrum, fragment_spectra,
                                             rotations, ctf_params, origins, apix, mass, extra)
                        if real.bfactor_A2 > 0:
                            images = bfactor_envelope(images, apix, real.bfactor_A2)
                        images = (images * contrast[sl, None, None]).astype(np.float32)
                if start == 0 and math.isfinite(snr):
                    true = kinds[sl] == "particle"  # SNR is that of the particles; junk may be empty
                    signal = images if true.all() or not true.any() else images[true]
                    noise_sigma = sigma_for_snr(float(signal.var(axis=(1, 2)).mean()), snr)
                    if real.noise_psd is not None:
                        noise_psd = scaled_to_variance(real.noise_psd, box, noise_sigma**2)
                if noise_psd is not None:
                    images = images + coloured_noise(images.shape, noise_psd, rng)
                elif noise_sigma > 0:
                    images = images + white_noise(images.shape, noise_sigma, rng)
                f.seek(data_offset + start * box * box * 4)
                f.write(np.ascontiguousarray(images, dtype="<f4").tobytes())
                stats.add(images)
        with mrcfile.mmap(tmp_stack, mode="r+") as mrc:  # maps, reads no data
            stats.write_to(mrc.header)

    rot, tilt, psi = matrix_to_euler(rotations)
    particles = pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1:06d}@particles.mrcs" for i in range(n)],
            "rlnOpticsGroup": 1,
            **dict(zip(STAR_ANGLES, (rot, tilt, psi))),
            **dict(zip(STAR_ORIGINS_A, (origins[:, 0], origins[:, 1]))),
        }
    )
    optics = pd.DataFrame({
        "rlnOpticsGroup": [1],
        "rlnOpticsGroupName": ["opticsGroup1"],
        "rlnImagePixelSize": [apix],
        "rlnImageSize": [box],
        "rlnImageDimensionality": [2],
        STAR_CTF["voltage_kV"]: [scope.voltage_kV],
        STAR_CTF["cs_mm"]: [scope.cs_mm],
        STAR_CTF["amp_contrast"]: [scope.amp_contrast],
    })
    truth = particles.copy()
    if use_ctf:
        for name in ("defocus_u_A", "defocus_v_A", "defocus_angle_deg", "phase_shift_deg"):
            particles[STAR_CTF[name]] = getattr(star_ctf, name)
            truth[STAR_CTF[name]] = getattr(ctf_params, name)
    # without CTF the STAR has no defocus columns, which readers take as "no CTF"
    write_star(out / "particles.star", {"optics": optics, "particles": particles})
    truth[STAR_CTF["bfactor_A2"]] = real.bfactor_A2
    truth["rlnCtfScalefactor"] = contrast
    truth[JUNK_KIND_COLUMN] = kinds.astype(str)
    truth[NEIGHBOUR_COLUMN] = neighbours.astype(int)
    write_star(out / TRUTH_STAR, {"optics": optics, "particles": truth})
    if noise_psd is not None:
        with atomic_path(out / TRUTH_NOISE_SPECTRUM) as tmp:
            np.savetxt(tmp, np.column_stack([np.arange(len(noise_psd)), noise_psd]), fmt=["%d", "%.8g"],
                       header="shell  power: E|F(k)|^2 of the orthonormal 2D DFT at shell round(|k|), per pixel^2")
    write_map(out / "truth.mrc", volume, apix)
    return {"n": n, "box": box, "apix": apix, "snr": snr, "noise_sigma": noise_sigma, "ctf": use_ctf,
            "n_junk": int((kinds != "particle").sum())}
