"""The preprocessed particle cache (`cryoai preprocess`): same batches as reading the stacks,
chunked and atomic writing, and one-line errors for a missing, mismatched or stale cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryoai.cli.main import main as cli
from cryoai.data import cache as cache_mod
from cryoai.data.cache import attach_cache, open_cache, write_cache
from cryoai.data.particles import load_particles
from cryoai.errors import InputError
from cryoai.phantom import phantom_map
from cryoai.simulate import simulate
from cryoai.data.training_data import TrainingData

ROWS = np.array([5, 3, 99, 0, 1, 2, 118, 3])  # unsorted, repeated, with a contiguous run


@pytest.fixture(scope="module")
def particles(tiny_set):
    return load_particles(tiny_set / "particles.star")


def _quiet(*_):
    pass


@pytest.mark.parametrize("invert", [False, True])
def test_cached_batches_equal_direct_at_full_box(particles, tmp_path, invert):
    """B = L: spectra, encoder images, CTF and statistics equal the stacks' to float16 precision."""
    cache = write_cache(particles, tmp_path / "c16", box=16, progress=False, log=_quiet)
    assert cache.meta["dtype"] == "float16" and cache.meta["float16_rel_rms_error"] < 1e-3
    direct = TrainingData(particles, 16, 8, invert=invert)
    cached = TrainingData(attach_cache(particles, tmp_path / "c16", 16), 16, 8, invert=invert)
    assert (cached.mean, cached.std) == (direct.mean, direct.std)
    a, b = direct.batch(ROWS), cached.batch(ROWS)
    scale = a.spectra.abs().pow(2).mean().sqrt()
    assert (a.spectra - b.spectra).abs().max() < 3e-3 * scale
    assert (a.images - b.images).abs().max() < 3e-3 * a.images.abs().max()
    assert np.array_equal(a.indices.numpy(), ROWS) and np.array_equal(b.indices.numpy(), ROWS)
    assert np.array_equal(a.ctf_params.as_array().numpy(), b.ctf_params.as_array().numpy())
    # and it is not trivially equal: another particle's image differs by order 1
    other = direct.batch(ROWS[::-1].copy())
    assert (other.images - b.images).abs().max() > 0.3 * a.images.abs().max()


def test_cached_batches_equal_direct_when_cropped(particles, tmp_path):
    """B < L: encoder images equal; spectra equal except the two Nyquist lines (module docstring)."""
    write_cache(particles, tmp_path / "c12", box=12, progress=False, log=_quiet)
    direct = TrainingData(particles, 12, 8)
    cached = TrainingData(attach_cache(particles, tmp_path / "c12", 12), 12, 8)
    a, b = direct.batch(ROWS), cached.batch(ROWS)
    scale = a.spectra.abs().pow(2).mean().sqrt()
    assert (a.spectra[:, 1:, 1:] - b.spectra[:, 1:, 1:]).abs().max() < 3e-3 * scale
    assert (a.images - b.images).abs().max() < 3e-3 * a.images.abs().max()
    assert cached.apix == pytest.approx(direct.apix)


def test_subsets_read_their_own_rows(particles, tmp_path):
    """A half set (ParticleSet.subset) reads the cache rows of its particles."""
    whole = attach_cache(particles, write_cache(particles, tmp_path / "c", box=16, progress=False, log=_quiet).path, 16)
    rows = np.array([7, 50, 8, 119])
    half = whole.subset(rows)
    np.testing.assert_array_equal(half.cache.images([0, 1, 2, 3]), whole.cache.images(rows))
    np.testing.assert_array_equal(TrainingData(half, 16, 16).batch([2, 0]).images.numpy(),
                                  TrainingData(whole, 16, 16).batch([8, 7]).images.numpy())


def test_writes_in_chunks_and_atomically(particles, tmp_path, monkeypatch):
    """Images go through memory ``chunk`` at a time; the result does not depend on the chunk;
    a failure half-way leaves the old cache intact and no temporary folder."""
    sizes = []
    original = TrainingData.normalised_images

    def spy(self, indices):
        sizes.append(len(indices))
        return original(self, indices)

    monkeypatch.setattr(TrainingData, "normalised_images", spy)
    small = write_cache(particles, tmp_path / "small", box=16, chunk=16, progress=False, log=_quiet)
    assert max(sizes[1:]) == 16 and sum(sizes[1:]) == 120  # sizes[0]: the float16 probe
    big = write_cache(particles, tmp_path / "big", box=16, chunk=1000, progress=False, log=_quiet)
    np.testing.assert_array_equal(small.images(np.arange(120)), big.images(np.arange(120)))

    calls = []

    def fail_late(self, indices):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("disk full")
        return original(self, indices)

    monkeypatch.setattr(TrainingData, "normalised_images", fail_late)
    before = (tmp_path / "small" / "images.npy").read_bytes()
    with pytest.raises(RuntimeError):
        write_cache(particles, tmp_path / "small", box=12, chunk=16, progress=False, log=_quiet)
    assert (tmp_path / "small" / "images.npy").read_bytes() == before
    assert open_cache(tmp_path / "small").box == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big", "small"]


def test_float32_when_float16_loses_too_much(particles, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "MAX_F16_ERROR", 1e-6)
    cache = write_cache(particles, tmp_path / "c", box=16, progress=False, log=_quiet)
    assert cache.meta["dtype"] == "float32"
    direct = TrainingData(particles, 16, 16).batch(ROWS).images
    cached = TrainingData(attach_cache(particles, cache.path, 16), 16, 16).batch(ROWS).images
    assert (direct - cached).abs().max() < 1e-5 * direct.abs().max()


def test_cli_preprocess_then_bad_caches(tiny_set, tmp_path, capsys):
    star, cache = str(tiny_set / "particles.star"), str(tmp_path / "cache")
    assert cli(["preprocess", star, "-o", cache, "--quiet"]) == 0
    assert "float16 relative RMS error" in capsys.readouterr().out
    meta = json.loads((tmp_path / "cache" / "cache.json").read_text())
    assert meta["n"] == 120 and meta["box"] == 16

    def one_line_error(argv, *phrases):
        assert cli(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
        for phrase in phrases:
            assert phrase in err

    run_args = ["--steps", "1", "--quiet", "--device", "cpu"]
    one_line_error(["train", star, "-o", str(tmp_path / "r1"), "--cache", str(tmp_path / "nope"), *run_args],
                   "not a particle cache")
    one_line_error(["train", star, "-o", str(tmp_path / "r2"), "--cache", cache, "--train-box", "12", *run_args],
                   "box 16", "--train-box 16")
    other = tmp_path / "other"
    simulate(phantom_map(16, 8.0), 8.0, 40, other, snr=10.0, seed=2, progress=False)
    one_line_error(["train", str(other / "particles.star"), "-o", str(tmp_path / "r3"), "--cache", cache, *run_args],
                   "other particles", "cryoai preprocess")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "keep.txt").write_text("mine")
    one_line_error(["preprocess", star, "-o", str(tmp_path / "junk"), "--quiet"], "not a particle cache")
    assert (tmp_path / "junk" / "keep.txt").read_text() == "mine"


def test_truncated_cache_is_refused(particles, tmp_path):
    cache = write_cache(particles, tmp_path / "c", box=16, progress=False, log=_quiet)
    with open(cache.path / "images.npy", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(InputError, match="rerun cryoai preprocess"):
        open_cache(cache.path)


def test_output_that_is_a_file_is_refused(particles, tmp_path):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(InputError, match="not a particle cache"):
        write_cache(particles, tmp_path / "f", box=16, progress=False, log=_quiet)
    assert (tmp_path / "f").read_text() == "mine"


def test_training_reads_the_cache(particles, tmp_path, monkeypatch):
    """Training steps on a cached set take their images from the cache, never the stacks."""
    from cryoai.train.config import TrainConfig
    from cryoai.train.run_dir import RunDir
    from cryoai.train.trainer import Trainer

    cached = attach_cache(particles, write_cache(particles, tmp_path / "c", box=16, progress=False, log=_quiet).path, 16)
    monkeypatch.setattr(type(particles.stack), "images", lambda *a, **k: pytest.fail("read the stacks"))
    cfg = TrainConfig(train_box=16, encoder_box=16, batch_size=8, steps=3, warm_start=False, encoder_widths=(4, 8),
                      synthetic_batch=0)
    run = RunDir(tmp_path / "run", quiet=True)
    trainer = Trainer(cached, cfg, run, progress=False)
    assert (trainer.data.mean, trainer.data.std) == (cached.cache.mean, cached.cache.std)
    losses = [trainer.train_step(step)["loss"] for step in range(3)]
    run.close()
    assert np.all(np.isfinite(losses))
