"""Which per-image score finds the poses a finished run left far off (what the re-search ranks by).

    python benchmarks/outlier_scores.py RUN_DIR DATA_DIR [RUN_DIR DATA_DIR ...]

RUN_DIR: a finished ``cryoai train`` run on DATA_DIR, a simulated set with true poses (e.g. one
benchmarks/reconstruction.py made). Each image is scored at its final pose against the run's
final map (checkpoints/last.pt), over what refinement compares, by
  residual     ‖x − m‖² / ‖x‖²  (high: bad; the re-search's score until 2026-12-01),
  correlation  Re⟨m, x⟩ / (‖m‖ ‖x‖)  (low: bad; ``train/scores.py``'s c),
  scale        Re⟨m, x⟩ / ‖m‖²  (low: bad; ``research.projection_scale``, the re-search's score now),
with x and m the whitened spectra (the trainer's noise model). The table gives each score's
area under the ROC curve for the poses > 20° from the truth and the share of them among the
worst 10 % and 30 % by it. One thread.

Measured 2026-12-01 (final maps and poses of 10k-particle L=64 runs, 20 and 30 min):

| set | far (>20°) | residual AUC / worst 10 % / 30 % | correlation | scale |
|---|---|---|---|---|
| 8ZPM SNR 0.1 | 0.240 | 0.520 / 0.09 / 0.35 | 0.524 / 0.10 / 0.35 | 0.763 / 0.32 / 0.62 |
| 4AKE SNR 0.1 | 0.165 | 0.655 / 0.08 / 0.48 | 0.653 / 0.08 / 0.48 | 0.799 / 0.42 / 0.70 |
| 8ZPM SNR 0.05 | 0.426 | 0.505 / 0.07 / 0.31 | 0.509 / 0.08 / 0.31 | 0.662 / 0.17 / 0.43 |
| 4AKE SNR 0.05 | 0.325 | 0.626 / 0.09 / 0.40 | 0.628 / 0.09 / 0.39 | 0.756 / 0.24 / 0.55 |
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cryoai.data.noise_spectrum import noise_model  # noqa: E402
from cryoai.data.particles import load_particles  # noqa: E402
from cryoai.data.training_data import TrainingData  # noqa: E402
from cryoai.eval.poses import register_rotations  # noqa: E402
from cryoai.eval.roc import roc_auc  # noqa: E402
from cryoai.physics.image_model import render_spectra  # noqa: E402
from cryoai.train.batches import chunked_batches  # noqa: E402
from cryoai.train.config import config_from_dict  # noqa: E402
from cryoai.train.decoder import loss_frequencies  # noqa: E402
from cryoai.train.predict import refinement_radius  # noqa: E402
from cryoai.train.research import projection_scale  # noqa: E402
from cryoai.train.trainer import build_models  # noqa: E402

FAR_DEG = 20.0


@torch.no_grad()
def scores(run: str, data_dir: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each score per image (high: worse) and each image's error to the truth (degrees)."""
    state = torch.load(os.path.join(run, "checkpoints", "last.pt"), map_location="cpu", weights_only=False)
    cfg = config_from_dict(state["config"])
    _, volume = build_models(cfg, "cpu")
    volume.load_state_dict(state["volume"])
    truth = load_particles(os.path.join(data_dir, "particles.star"))
    final = load_particles(os.path.join(run, "particles.star"))
    data = TrainingData(truth, cfg.train_box, cfg.encoder_box, invert=cfg.invert, seed=cfg.seed)
    data.noise = noise_model(data, cfg.particle_diameter_A, cfg.seed, lambda line: None)
    box = data.train_box
    idx, freqs = loss_frequencies(box, refinement_radius(box, box / 2))
    out: dict[str, list] = {"residual": [], "correlation": [], "scale": []}
    for start, b in chunked_batches(data, np.arange(len(truth)), 256, 0):
        part = slice(start, start + len(b.indices))
        x, c = b.spectra.reshape(len(b.indices), -1)[:, idx], b.model_filter(freqs, data.apix)
        rot = torch.from_numpy(final.rotations[part]).float()
        origin = torch.from_numpy(final.origins_A[part] / data.apix).float()
        m = render_spectra(volume, rot, freqs, c, origin)
        xm, mm, xx = (x.conj() * m).real.sum(-1), m.abs().pow(2).sum(-1), x.abs().pow(2).sum(-1)
        out["residual"].append(((x - m).abs().pow(2).sum(-1) / xx).numpy())
        out["correlation"].append((-xm / (mm.sqrt() * xx.sqrt())).numpy())
        out["scale"].append(-projection_scale(volume, rot, origin, x, c, freqs).numpy())  # what the re-search ranks by
    errors = register_rotations(final.rotations, truth.rotations).errors_deg
    return {k: np.concatenate(v) for k, v in out.items()}, errors


def caught(score: np.ndarray, positive: np.ndarray, fraction: float) -> float:
    """The share of the positives among the worst ``fraction`` by ``score``."""
    worst = np.argsort(-score, kind="stable")[: int(round(fraction * len(score)))]
    return float(positive[worst].sum() / positive.sum())


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 2 or len(args) % 2:
        sys.exit(__doc__)
    torch.set_num_threads(1)
    names = ("residual", "correlation", "scale")
    print("| run | far (>20°) | " + " | ".join(f"{n} AUC / worst 10 % / 30 %" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for run, data_dir in zip(args[::2], args[1::2]):
        s, errors = scores(run, data_dir)
        far = errors > FAR_DEG
        cells = [f"{roc_auc(s[n], far):.3f} / {caught(s[n], far, 0.1):.2f} / {caught(s[n], far, 0.3):.2f}" for n in names]
        print(f"| {run} | {far.mean():.3f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
