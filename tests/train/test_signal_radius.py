"""How far out the images carry signal (train/signal_radius.py): the ring SNR against a hand
calculation, and the refinement radius it allows."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from cryoai.data.particles import load_particles
from cryoai.data.training_data import Batch, TrainingData
from cryoai.geometry.rotations import random_rotations
from cryoai.models.voxel import VoxelVolume
from cryoai.phantom import phantom_map
from cryoai.physics.image_model import render_spectra
from cryoai.simulate import simulate
from cryoai.train import finish
from cryoai.train.finish import PoseSettings, final_map_and_poses, load_reconstruction, measure_signal_radius
from cryoai.train.signal_radius import MIN_RING_SNR, held_out, ring_snr, signal_radius
from cryoai.train.trainer import build_models
from helpers import tiny_config


def full_grid_freqs(box: int) -> torch.Tensor:
    """(box², 2) frequencies (cycles/px; x, y) of a centred (box, box) spectrum, row-major."""
    f = torch.arange(box) - box // 2
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    return torch.stack([fx.flatten(), fy.flatten()], -1).float() / box


def test_ring_snr_of_white_noise_is_the_rings_signal_power_over_the_noise_power(tmp_path, one_thread):
    """Images made as the map's predictions at known poses plus complex white noise of σ² per
    pixel: the ring SNR at shell s is the mean over the images of Σ_ring |y|²/σ², computed here
    by hand (within 10 % where that lies in 0.2-100: a smooth phantom's rings span 10⁵)."""
    box, n, sigma2 = 16, 400, 0.01
    simulate(phantom_map(box, 8.0), 8.0, 300, tmp_path, snr=np.inf, shift_std_A=0.0, seed=1, progress=False)
    clean = TrainingData(load_particles(tmp_path / "particles.star"), box, box)
    volume = VoxelVolume(box)
    p = clean.particles
    load_reconstruction(volume, clean, np.arange(len(p)), (p.rotations, p.origins_A), PoseSettings(8.0, True))

    rng = np.random.default_rng(3)
    rot = random_rotations(n, rng)
    origins_A = rng.normal(0, 4.0, (n, 2))
    freqs = full_grid_freqs(box)
    with torch.no_grad():
        y = render_spectra(volume, torch.from_numpy(rot).float(), freqs, None, torch.from_numpy(origins_A / 8.0).float())
    gen = torch.Generator().manual_seed(0)
    noise = torch.complex(torch.randn(y.shape, generator=gen), torch.randn(y.shape, generator=gen)) * np.sqrt(sigma2 / 2)
    spectra = (y + noise).reshape(n, box, box)
    data = SimpleNamespace(train_box=box, apix=8.0,
                           batch=lambda rows: Batch(torch.from_numpy(np.asarray(rows)), spectra[rows],
                                                    torch.zeros(len(rows), box, box), None))

    snr = ring_snr(volume, data, np.arange(n), rot, origins_A)
    shell = torch.linalg.norm(freqs * box, dim=1).round().long()
    half = (freqs[:, 0] > 0) | ((freqs[:, 0] == 0) & (freqs[:, 1] >= 0))  # the half plane the fit compares
    power = (y.abs() ** 2).mean(0)
    expected = np.array([float(power[(shell == s) & half].sum()) / sigma2 for s in range(box // 2 + 1)])
    strong = [s for s in range(2, box // 2) if 0.2 <= expected[s] <= 100]  # where σ² is well estimated
    assert len(strong) >= 4
    assert np.allclose(snr[strong], expected[strong], rtol=0.1), (snr, expected)



def test_signal_radius_is_the_last_shell_before_the_signal_falls_below_the_bound():
    """Box 64: a curve of 5 to shell 11 and 0.2 beyond, whose 3-shell mean first falls under
    MIN_RING_SNR at shell 13, allows 12; a dip of a single shell that the mean bridges does not
    stop it; a curve above the bound out to Nyquist allows box/4 (the usual radius), one below it
    everywhere box/8."""
    curve = np.full(33, 5.0)
    curve[12:] = 0.2
    assert signal_radius(curve, 64) == 12.0
    dip = np.full(33, 2.0)
    dip[9] = MIN_RING_SNR / 4  # (2 + 0.125 + 2) / 3 > the bound
    dip[14:] = 0.0
    assert signal_radius(dip, 64) == 14.0  # the mean at 14 is 2/3, at 15 zero
    assert signal_radius(np.full(33, 10.0), 64) == 16.0
    assert signal_radius(np.full(33, 0.1), 64) == 8.0


def test_held_out_rows_are_a_spread_quarter_at_most():
    assert len(held_out(3)) == 0
    rows = held_out(400)
    assert len(rows) == 100 and rows[0] == 0 and rows[-1] == 399 and np.all(np.diff(rows) > 0)
    assert len(held_out(100_000)) == 1024


def test_images_of_pure_noise_allow_only_the_lowest_radius_when_held_out_of_the_map(tmp_path, one_thread):
    """400 images of almost pure noise (SNR 10⁻⁴), box 16: images the map was made from correlate
    with it by their own noise (a ring SNR of 0.12-0.25 at shells 4-7, with no signal there), so
    the finish measures on images held out of it, and those allow only box/8."""
    simulate(phantom_map(16, 8.0), 8.0, 400, tmp_path, snr=1e-4, shift_std_A=0.0, seed=2, progress=False)
    data = TrainingData(load_particles(tmp_path / "particles.star"), 16, 16)
    p, rows, how = data.particles, np.arange(400), PoseSettings(8.0, True)
    volume = VoxelVolume(16)
    load_reconstruction(volume, data, rows, (p.rotations, p.origins_A), how)
    own = ring_snr(volume, data, rows, p.rotations, p.origins_A)
    assert np.all(own[4:8] > 0.1), own
    lines = []
    assert measure_signal_radius(volume, data, rows, (p.rotations, p.origins_A), how, lines.append) == 2.0
    assert "100 held-out images" in lines[0] and "up to shell 2" in lines[0]


def test_the_finish_refines_up_to_the_measured_radius(tmp_path, monkeypatch):
    """The radius measured from the first poses bounds every refinement and re-search against the
    subset's maps that follows, the other particles' included."""
    simulate(phantom_map(16, 8.0), 8.0, 60, tmp_path, snr=10.0, shift_std_A=4.0, seed=1, progress=False)
    data = TrainingData(load_particles(tmp_path / "particles.star"), 16, 16)
    encoder, volume = build_models(tiny_config(), "cpu")
    monkeypatch.setattr(finish, "measure_signal_radius", lambda *args: 3.0)
    refined, searched = [], []
    real_predict, real_research = finish.predict_poses_sharded, finish.research_poses

    def predict(*args, **kwargs):
        refined.append(kwargs["signal_to"] if kwargs["refine"] else "unrefined")
        return real_predict(*args, **kwargs)

    def research(*args, **kwargs):
        searched.append(kwargs["signal_to"])
        return real_research(*args, **kwargs)

    monkeypatch.setattr(finish, "predict_poses_sharded", predict)
    monkeypatch.setattr(finish, "research_poses", research)
    final_map_and_poses(encoder, volume, data, PoseSettings(radius=8.0, symmetric=True), subset_size=40, rounds=2, seed=0)
    assert refined[0] is None  # the subset's first poses, before the measurement
    assert refined[1:] == [3.0, 3.0, 3.0], refined  # two rounds, then the other 20 particles
    assert searched == [3.0, 3.0]
