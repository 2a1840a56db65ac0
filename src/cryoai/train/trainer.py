"""The training loop: warm start, then encoder and volume trained with the symmetric loss.

Stages (placed by the schedule position, see ``TrainConfig`` and ``Trainer.fit``):
1. warm start: ab initio projection matching on a fixed subset at a small box gives a volume
   and the subset's poses (fixed cost, independent of the data-set size);
2. the encoder learns on images rendered from that volume at known poses, then on the data
   too, the volume frozen, supervised by the subset's poses;
3. encoder and volume train together, the supervision fades, the loss radius marches out;
4. finish: poses for every particle (encoder + local refinement) and the final map.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from tqdm import tqdm

from cryoai.data.particle_export import write_particle_files
from cryoai.data.particles import ParticleSet
from cryoai.io.mrc import write_map
from cryoai.losses import HALF_TURN, symmetric_loss
from cryoai.models.encoder import PoseEncoder
from cryoai.models.fouriernet import FourierNet
from cryoai.models.volume_map import volume_to_map
from cryoai.models.voxel import VoxelVolume
from cryoai.physics.backprojection import backproject, confine_to_box, wiener_reconstruct
from cryoai.physics.ctf import ctf
from cryoai.physics.image_model import render_spectra
from cryoai.geometry.grids import freq_grid_2d, ifft2_centered
from cryoai.geometry.rotations import random_rotations
from cryoai.train.batches import Batch, TrainingData, batches, chunked_batches, crop_spectra
from cryoai.train import distributed as dist
from cryoai.train.checkpoint import load_checkpoint, save_checkpoint
from cryoai.train.config import TrainConfig
from cryoai.train.predict import REFINE_RADIUS, encode_both, loss_frequencies, predict_poses, predict_poses_sharded
from cryoai.train.run_dir import RunDir
from cryoai.train.warmstart import warm_start


def loss_radius(cfg: TrainConfig, position: float) -> float:
    """Radius (Fourier pixels of the training box) the loss compares at a schedule position in
    [0, 1]: it marches from train_box/8 to train_box/2 until ``march_until``."""
    r0, r1 = cfg.train_box / 8, cfg.train_box / 2
    return r0 + (r1 - r0) * min(1.0, position / max(cfg.march_until, 1e-9))


def build_models(cfg: TrainConfig, device: str) -> tuple[PoseEncoder, torch.nn.Module]:
    """The encoder (its CNN in bfloat16 under ``precision="bf16"``, compiled in place under
    ``compile``: the state dict is unchanged either way) and the volume, on ``device``."""
    encoder = PoseEncoder(cfg.encoder_box, widths=tuple(cfg.encoder_widths), max_shift_px=cfg.train_box / 8)
    encoder.bf16 = cfg.precision == "bf16"
    if cfg.compile:  # the real-valued part (inductor generates no code for the filter bank's FFTs);
        encoder.features = torch.compile(encoder.features)  # not Module.compile: torch 2.13 runs that eagerly
    if cfg.volume == "fouriernet":
        volume = FourierNet(cfg.train_box, hidden=cfg.fouriernet_hidden)
    else:
        volume = VoxelVolume(cfg.train_box, oversample=2)
    return encoder.to(device), volume.to(device)


def reconstruct(data: TrainingData, rows: np.ndarray, rotations: torch.Tensor, origins_px: torch.Tensor,
                oversample: int, workers: int = 0) -> torch.Tensor:
    """A direct Fourier reconstruction (oversampled grid) of ``rows`` at the given poses:
    one streaming pass of back-projection, Wiener-regularised, confined to the box.
    Under torchrun each rank back-projects its share of the rows and the sums are added up.
    ``workers`` processes read the next batches meanwhile (``batches``)."""
    box = data.train_box
    idx, freqs = loss_frequencies(box, box // 2)
    share = dist.shard_range(len(rows))
    rows, rotations, origins_px = rows[share], rotations[share], origins_px[share]
    size = box * oversample
    into = (torch.zeros((size,) * 3, dtype=torch.complex64), torch.zeros((size,) * 3))
    for start, b in chunked_batches(data, rows, 256, workers):
        c = ctf(freqs / data.apix, b.ctf_params) if b.ctf_params is not None else None
        into = backproject(b.spectra.reshape(len(b.indices), -1)[:, idx], rotations[start : start + 256], freqs,
                           box, c, origins_px[start : start + 256], oversample=oversample, into=into)
    dist.sum_tensors(*into)
    return confine_to_box(wiener_reconstruct(*into, 0.05), box)


class Trainer:
    def __init__(self, particles: ParticleSet, cfg: TrainConfig, run: RunDir, device: str = "cpu",
                 resume: bool = False, progress: bool = True):
        self.particles, self.cfg, self.run, self.device, self.progress = particles, cfg, run, device, progress
        self.data = TrainingData(particles, cfg.train_box, cfg.encoder_box, invert=cfg.invert, seed=cfg.seed)
        cfg.train_box, cfg.encoder_box = self.data.train_box, self.data.encoder_box
        torch.manual_seed(cfg.seed)
        self.encoder, self.volume = build_models(cfg, device)
        self.opt_encoder = torch.optim.Adam(self.encoder.parameters(), lr=cfg.encoder_lr)
        self.opt_volume = torch.optim.Adam(self.volume.parameters(), lr=cfg.volume_lr)
        self.step = 0
        self.position = 0.0  # where the schedule stands, 0 … 1 (see fit)
        self.train_seconds = 0.0  # wall time spent in the training loop so far
        self.elapsed_before = 0.0
        self.subset = np.zeros(0, dtype=np.int64)
        self.subset_rot = torch.zeros(0, 3, 3)
        self.subset_origin = torch.zeros(0, 2)
        self._stream, self._stream_next = None, None  # training batches read ahead (next_batch)
        if resume:
            self._restore(load_checkpoint(run.path / "checkpoints" / "last.pt"))
        self._index_subset()
        dist.broadcast_module(self.encoder)  # under torchrun: rank 0's weights everywhere (as DDP does)
        dist.broadcast_module(self.volume)

    def _index_subset(self) -> None:
        """subset_pos[i] = position of particle i in the warm-start subset, or −1."""
        self.subset_pos = torch.full((len(self.particles),), -1, dtype=torch.long)
        self.subset_pos[torch.from_numpy(self.subset)] = torch.arange(len(self.subset))

    # ---- state -------------------------------------------------------------------------
    def _state(self) -> dict:
        return {"step": self.step, "position": self.position, "train_seconds": self.train_seconds,
                "elapsed": self.elapsed_before + time.time() - self.t_start,
                "encoder": self.encoder.state_dict(), "volume": self.volume.state_dict(),
                "opt_encoder": self.opt_encoder.state_dict(), "opt_volume": self.opt_volume.state_dict(),
                "subset": self.subset, "subset_rot": self.subset_rot, "subset_origin": self.subset_origin,
                "config": self.cfg.to_dict(), "data_mean": self.data.mean, "data_std": self.data.std,
                "apix": self.data.apix}

    def _restore(self, state: dict) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.volume.load_state_dict(state["volume"])
        self.opt_encoder.load_state_dict(state["opt_encoder"])
        self.opt_volume.load_state_dict(state["opt_volume"])
        self.step, self.elapsed_before = state["step"], state["elapsed"]
        self.position, self.train_seconds = state.get("position", 0.0), state.get("train_seconds", 0.0)
        self.subset, self.subset_rot, self.subset_origin = state["subset"], state["subset_rot"], state["subset_origin"]
        self.run.log(f"resumed from step {self.step}")

    # ---- stages ------------------------------------------------------------------------
    def warm_start(self) -> None:
        cfg, data = self.cfg, self.data
        rng = np.random.default_rng(cfg.seed)
        self.subset = np.sort(rng.choice(len(self.particles), min(cfg.warm_subset, len(self.particles)), replace=False))
        b = min(cfg.warm_box, data.train_box)
        spectra = torch.cat([crop_spectra(data.batch(self.subset[i : i + 512]).spectra, b)
                             for i in range(0, len(self.subset), 512)])
        apix_b = data.apix * data.train_box / b
        freqs = freq_grid_2d(b).reshape(-1, 2)
        if self.particles.ctf is not None:
            params = torch.from_numpy(self.particles.ctf[self.subset]).to(torch.float32)
            ctf_values = ctf(freqs / apix_b, params).reshape(-1, b, b)
        else:
            ctf_values = torch.ones(len(self.subset), b, b)
        t0 = time.time()
        result = warm_start(spectra, ctf_values, b, iterations=cfg.warm_iterations, seed=cfg.seed, log=self.run.log)
        self.subset_rot = result.rotations
        self.subset_origin = result.origins_px * (data.train_box / b)
        self._index_subset()
        spectrum = reconstruct(data, self.subset, self.subset_rot, self.subset_origin, self.volume.oversample)
        self.volume.load_spectrum(spectrum.to(self.device))
        record = {"step": 0, "stage": "warm_start", "seconds": time.time() - t0}
        if self.particles.rotations is not None:  # simulated or published poses: how close it came
            from cryoai.eval.poses import evaluate_poses

            errors = evaluate_poses(self.subset_rot.double().numpy(), self.particles.rotations[self.subset])
            record.update(rot_median_deg=errors["rot_median_deg"], frac_within_10deg=errors["frac_within_10deg"])
        self.run.log(f"warm start: {len(self.subset)} images at box {b} in {time.time() - t0:.0f} s"
                     + (f", median error vs the input poses {record['rot_median_deg']:.1f}°" if "rot_median_deg" in record else ""))
        self.run.metrics(record)

    def share_warm_start(self) -> None:
        """Under torchrun every rank has run the warm start with the same seed; rank 0's poses and
        volume are made everyone's, so ranks agree exactly."""
        if dist.world_size() > 1:
            dist.broadcast_tensors(self.subset_rot, self.subset_origin)
            dist.broadcast_module(self.volume)

    def radius(self) -> float:
        return loss_radius(self.cfg, self.position)

    def supervision_weight(self) -> float:
        cfg, p = self.cfg, self.position
        if not len(self.subset) or p >= cfg.supervise_until:
            return 0.0
        if p < cfg.freeze_volume_until:
            return cfg.supervision_weight
        fade = (p - cfg.freeze_volume_until) / max(cfg.supervise_until - cfg.freeze_volume_until, 1e-9)
        return cfg.supervision_weight * (1 - fade)

    def sample_indices(self, step: int, with_subset: bool) -> np.ndarray:
        gen = np.random.default_rng([self.cfg.seed, step])
        n, bsz = len(self.particles), self.cfg.batch_size
        if not with_subset:
            return gen.integers(0, n, bsz)
        k = bsz // 4
        return np.concatenate([gen.integers(0, n, bsz - k), self.subset[gen.integers(0, len(self.subset), k)]])

    def next_batch(self, step: int, with_subset: bool) -> Batch:
        """This rank's share of step ``step``'s batch (``sample_indices``), from a stream that
        ``cfg.workers`` processes prepare ahead. A request the stream did not foresee (the first,
        or the subset draw switching off when supervision ends) starts a new one from there."""
        if self._stream_next != (step, with_subset):

            def rows_of(i: int) -> np.ndarray:
                return dist.shard(self.sample_indices(step + i, with_subset))

            self._stream = batches(self.data, rows_of, self.cfg.steps - step, self.cfg.workers,
                                   pin_memory=str(self.device).startswith("cuda"))
        self._stream_next = (step + 1, with_subset)
        return next(self._stream)

    def synthetic_batch(self, step: int, n: int):
        """Images rendered from the current volume at known random poses, with the data's CTFs,
        shifts and noise level: unlimited labelled examples that teach the encoder the map's
        views (its cost per step is fixed). Returns (encoder images, rotations, origins_px);
        under torchrun, this rank's strided share of the n drawn."""
        data, gen = self.data, np.random.default_rng([self.cfg.seed, step, 7])
        box = data.train_box
        rot = torch.from_numpy(random_rotations(n, gen)).to(torch.float32)
        spread = float(self.subset_origin.std()) if len(self.subset_origin) > 1 else 0.0
        origin = torch.from_numpy(gen.normal(0.0, spread, (n, 2))).to(torch.float32)
        freqs = freq_grid_2d(box).reshape(-1, 2)
        c = None
        if self.particles.ctf is not None:
            rows = gen.integers(0, len(self.particles), n)
            c = ctf(freqs / data.apix, torch.from_numpy(self.particles.ctf[rows]).to(torch.float32))
        mine = torch.from_numpy(dist.shard(np.arange(n)))
        rot, origin, c = rot[mine], origin[mine], None if c is None else c[mine]
        with torch.no_grad():
            spectra = render_spectra(self.volume, rot.to(self.device), freqs.to(self.device),
                                     None if c is None else c.to(self.device), origin.to(self.device))
        spectra = spectra.reshape(len(mine), box, box)
        signal = dist.mean_over_ranks(float(spectra.abs().pow(2).mean()), len(mine))
        noise_sd = math.sqrt(max(1.0 - signal, 0.05))  # data spectra have unit mean power per coefficient
        g = torch.Generator(device="cpu").manual_seed(int(gen.integers(2**62)))
        shape = (n, box, box)
        noise = torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))[mine]
        spectra = spectra + (noise_sd / math.sqrt(2)) * noise.to(self.device)
        images = ifft2_centered(crop_spectra(spectra, data.encoder_box)) * data.encoder_box
        return images, rot.to(self.device), origin.to(self.device)

    def pretrain_step(self, step: int) -> dict:
        """Encoder only, on images rendered from the (frozen) warm-start volume at known poses."""
        self.encoder.train()
        images, rot_true, origin_true = self.synthetic_batch(step, self.cfg.batch_size)
        rot, origin = self.encoder(images)
        loss = ((rot - rot_true).pow(2).sum((1, 2)) + 0.1 * (origin - origin_true).pow(2).sum(1)).mean()
        self.opt_encoder.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(self.encoder)
        dist.average_buffers(self.encoder)
        self.opt_encoder.step()
        return {"step": step + 1, "stage": "pretrain", "synthetic": float(loss.detach()), "loss": float(loss.detach()),
                "radius": self.radius(), "rotated_won": 0.0}

    def train_step(self, step: int) -> dict:
        cfg = self.cfg
        if self.position < cfg.pretrain_until and len(self.subset):
            return self.pretrain_step(step)
        symmetric = cfg.loss == "symmetric"
        w_sup = self.supervision_weight()
        batch = self.next_batch(step, w_sup > 0).to(self.device)  # this rank's share
        idx, freqs = loss_frequencies(cfg.train_box, self.radius(), self.device)
        self.encoder.train()
        r, o, e1, e2, rot_both, origin_both, won = encode_both(
            self.encoder, self.volume, batch, idx, freqs, self.data.apix, symmetric, self.device)
        loss = symmetric_loss(e1, e2)[0] if symmetric else e1.mean()
        record = {"step": step + 1, "loss": float(loss.detach()), "radius": self.radius(), "rotated_won": float(won.float().mean())}
        if w_sup > 0:
            pos = self.subset_pos[batch.indices]
            sel = torch.nonzero(pos >= 0).squeeze(1)
            target_r = self.subset_rot[pos[sel]].to(self.device)
            target_o = self.subset_origin[pos[sel]].to(self.device)
            n = len(batch.indices)
            sup = (rot_both[sel] - target_r).pow(2).sum((1, 2)) + 0.1 * (origin_both[sel] - target_o).pow(2).sum(1)
            if symmetric:
                half = HALF_TURN.to(self.device)
                sup = sup + (rot_both[n + sel] - half @ target_r).pow(2).sum((1, 2)) \
                    + 0.1 * (origin_both[n + sel] + target_o).pow(2).sum(1)
            sup_loss = sup.mean() if len(sel) else sup.sum()  # a torchrun share may hold no subset image
            if cfg.synthetic_batch:
                images, rot_true, origin_true = self.synthetic_batch(step, cfg.synthetic_batch)
                rot_syn, origin_syn = self.encoder(images)
                syn = (rot_syn - rot_true).pow(2).sum((1, 2)) + 0.1 * (origin_syn - origin_true).pow(2).sum(1)
                sup_loss = sup_loss + syn.mean()
                record["synthetic"] = float(syn.mean().detach())
            loss = loss + w_sup * sup_loss * float(e1.detach().mean())
            record["supervision"] = float(sup_loss.detach())
        train_volume = self.position >= cfg.freeze_volume_until or not len(self.subset)
        self.opt_encoder.zero_grad(set_to_none=True)
        self.opt_volume.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(self.encoder)
        dist.average_buffers(self.encoder)
        if train_volume:
            dist.average_gradients(self.volume)
        self.opt_encoder.step()
        if train_volume:
            self.opt_volume.step()
        return record

    # ---- outputs -----------------------------------------------------------------------
    def write_volume(self, path) -> None:
        vol = volume_to_map(self.volume, self.cfg.train_box)
        write_map(path, vol.numpy(), self.data.apix)

    def pose_errors(self, n: int = 500) -> dict | None:
        """Errors against the input STAR's poses, when it has them (simulated or published)."""
        if self.particles.rotations is None:
            return None
        from cryoai.eval.poses import evaluate_poses

        rows = np.random.default_rng(0).choice(len(self.particles), min(n, len(self.particles)), replace=False)
        rot, origin = predict_poses(self.encoder, self.volume, self.data, self.radius(),
                                    self.cfg.loss == "symmetric", device=self.device, progress=False, indices=rows)
        true_origin = self.particles.origins_A[rows] if self.particles.origins_A is not None else None
        return evaluate_poses(rot, self.particles.rotations[rows], origin, true_origin, self.data.apix)

    def finish(self) -> dict:
        """Final map and poses.

        On a fixed-size subset (``final_subset`` particles, all of them in a smaller set): poses
        from the encoder with local refinement, then ``final_iterations`` rounds of direct
        reconstruction and refinement against it. Then every particle gets its pose from the
        encoder, refined against that map (the subset keeps its own), and the map written is
        reconstructed from all of them. Only the last two passes grow with the data set.
        """
        run, cfg, data = self.run, self.cfg, self.data
        n = len(self.particles)
        radius = self.radius()
        refine_radius = max(radius, REFINE_RADIUS * cfg.train_box)  # the refinement compares up to this

        def poses(rows, start=None):  # under torchrun each rank predicts its share
            return predict_poses_sharded(self.encoder, self.volume, data, radius if start is None else refine_radius,
                                         cfg.loss == "symmetric", device=self.device, progress=self.progress,
                                         indices=rows, start_poses=start, workers=cfg.workers)

        def load_map(rows, rot, origin):
            spectrum = reconstruct(data, rows, torch.from_numpy(rot).float(), torch.from_numpy(origin / data.apix).float(),
                                   self.volume.oversample, cfg.workers)
            self.volume.load_spectrum(spectrum.to(self.device))

        subset = np.arange(n)
        if n > cfg.final_subset:
            subset = np.sort(np.random.default_rng(cfg.seed).choice(n, cfg.final_subset, replace=False))
        rot_s, origin_s = poses(subset)
        for it in range(cfg.final_iterations):
            load_map(subset, rot_s, origin_s)
            if dist.is_main():  # the maps along the way, as during training (time to resolution)
                self.write_volume(run.path / "volumes" / f"final_round_{it + 1}.mrc")
            rot_s, origin_s = poses(subset, (rot_s, origin_s))
            run.log(f"final refinement {it + 1}/{cfg.final_iterations}: reconstructed from {len(subset)} poses, refined")
        if n > len(subset):
            rot, origin = poses(None)
            rot[subset], origin[subset] = rot_s, origin_s
            run.log(f"poses for all {n} particles predicted and refined")
        else:
            rot, origin = rot_s, origin_s
        load_map(np.arange(n), rot, origin)
        if dist.is_main():
            self.write_volume(run.path / "volume.mrc")
            write_particle_files(run.path / "particles.star", self.particles, rot, origin)  # + particles.cs for .cs input
            save_checkpoint(run.path / "checkpoints" / "last.pt", self._state())  # `cryoai predict` uses the final map
        run.log(f"wrote {run.path / 'volume.mrc'} ({self.cfg.train_box} px, {self.data.apix:.3f} Å/px) "
                f"and poses for {len(rot)} particles in {run.path / 'particles.star'}")
        return {"rotations": rot, "origins_A": origin}

    def finish_seconds(self) -> float:
        """Estimated wall time of ``finish``: predicting and refining 256 images, timed, scaled to
        the passes ``finish`` makes, plus a third for the reconstructions."""
        rows = np.arange(min(256, len(self.particles)))
        t0 = time.time()
        predict_poses(self.encoder, self.volume, self.data, self.radius(), device=self.device, progress=False, indices=rows)
        per_image = (time.time() - t0) / len(rows)
        n = len(self.particles)
        subset = min(n, self.cfg.final_subset)
        passes = subset * (self.cfg.final_iterations + 1) + (n - subset)
        return 1.3 * per_image * passes / dist.world_size()  # under torchrun the ranks share the passes

    def fit(self) -> dict:
        """Warm start, the training loop, then ``finish``.

        The stages are placed by the schedule position: the fraction of ``steps`` done or, under
        ``max_minutes``, the fraction of the training-time budget spent if that is larger (the
        budget is what the limit leaves after the warm start and the estimated ``finish``), so a
        time limit compresses the whole schedule instead of cutting it short.
        """
        cfg, run = self.cfg, self.run
        self.t_start = time.time()
        if self.step == 0 and cfg.warm_start:
            self.warm_start()
            self.share_warm_start()
        budget = math.inf
        if cfg.max_minutes:
            left = 60 * cfg.max_minutes - self.elapsed_before - (time.time() - self.t_start)
            budget = self.train_seconds + max(left - self.finish_seconds(), 0.0)
            budget = dist.from_main(budget)  # under torchrun, rank 0's clock rules: all stop at one step
            run.log(f"training-time budget {budget / 60:.1f} min of the {cfg.max_minutes:g}-minute limit")
        main = dist.is_main()  # under torchrun, rank 0 alone evaluates and writes (RunDir is inert elsewhere)
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", disable=not (self.progress and main))
        t_window, n_window = time.time(), 0
        while self.step < cfg.steps and self.train_seconds < budget:
            self.position = max(self.step / cfg.steps, self.train_seconds / budget)
            t_step = time.time()
            record = self.train_step(self.step)
            self.step += 1
            n_window += cfg.batch_size
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                record = dist.mean_record(record)  # losses over every rank's share
                rate = n_window / (time.time() - t_window)
                t_window, n_window = time.time(), 0
                record.update(images_per_s=rate, elapsed_s=self.elapsed_before + time.time() - self.t_start)
                if main and (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps):
                    errors = self.pose_errors()
                    if errors:
                        record.update({k: errors[k] for k in ("rot_median_deg", "frac_within_10deg", "trans_median_px", "hand")})
                run.metrics(record)
                bar.set_postfix(loss=f"{record['loss']:.4g}", img_s=f"{rate:.0f}", r=f"{record['radius']:.0f}")
                run.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            if main and self.step % cfg.checkpoint_every == 0:
                save_checkpoint(run.path / "checkpoints" / "last.pt", self._state())
            if main and self.step % cfg.volume_every == 0:
                self.write_volume(run.path / "volumes" / f"step_{self.step:06d}.mrc")
            self.train_seconds += time.time() - t_step  # the step and its bookkeeping
            if budget < math.inf:
                self.train_seconds = dist.from_main(self.train_seconds)  # so every rank stops together
        bar.close()
        self._stream = self._stream_next = None  # the workers exit
        if main:
            save_checkpoint(run.path / "checkpoints" / "last.pt", self._state())
        return self.finish()
