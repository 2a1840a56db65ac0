"""A float16 (MRC mode 12) particle stack, as cryoSPARC writes, loads and trains like float32."""

from __future__ import annotations

import shutil

import mrcfile
import numpy as np
import pytest
import torch

from cryoai.cli.main import main as cli
from cryoai.data.particles import load_particles
from cryoai.phantom import phantom_map
from cryoai.simulate import simulate
from cryoai.data.training_data import TrainingData


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """The same simulated particles (box 32) as float32 and float16 stacks."""
    f32 = tmp_path_factory.mktemp("f32")
    simulate(phantom_map(32, 4.0), 4.0, 200, f32, snr=1.0, seed=3, progress=False)
    f16 = tmp_path_factory.mktemp("f16")
    shutil.copy(f32 / "particles.star", f16 / "particles.star")
    for stack in f32.glob("*.mrcs"):
        with mrcfile.open(stack) as m:
            data, voxel = m.data.astype(np.float16), m.voxel_size
        with mrcfile.new(f16 / stack.name) as m:
            m.set_data(data)
            m.voxel_size = voxel
    with mrcfile.open(next(f16.glob("*.mrcs")), header_only=True) as m:
        assert int(m.header.mode) == 12
    return f32 / "particles.star", f16 / "particles.star"


def test_float16_stack_loads_and_batches_like_float32(sets):
    p32, p16 = (load_particles(path) for path in sets)
    assert (len(p16), p16.box, p16.apix) == (len(p32), p32.box, p32.apix) == (200, 32, 4.0)
    rows = np.array([7, 0, 199, 50])
    images32, images16 = p32.images(rows), p16.images(rows)
    assert images16.dtype == np.float32
    np.testing.assert_array_equal(images16, images32.astype(np.float16).astype(np.float32))
    d32, d16 = (TrainingData(p, 32, 32) for p in (p32, p16))
    assert d16.mean == pytest.approx(d32.mean, abs=1e-3 * d32.std) and d16.std == pytest.approx(d32.std, rel=1e-3)
    b32, b16 = d32.batch(rows), d16.batch(rows)
    scale = float(b32.images.abs().max())
    assert torch.allclose(b16.images, b32.images, atol=2e-3 * scale)
    assert torch.allclose(b16.spectra, b32.spectra, atol=2e-3 * float(b32.spectra.abs().max()))
    assert torch.equal(b16.ctf_params.as_array(), b32.ctf_params.as_array())


def test_cryoai_train_runs_on_a_float16_stack(sets, tmp_path):
    out = tmp_path / "run"
    assert cli(["train", str(sets[1]), "-o", str(out), "--steps", "10", "--batch-size", "8", "--train-box", "32",
                "--device", "cpu", "--quiet"]) == 0
    assert (out / "volume.mrc").is_file() and (out / "particles.star").is_file()
