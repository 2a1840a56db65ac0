"""The training loop: warm start, then encoder and volume trained with the symmetric loss.

Stages (placed by the schedule position: ``train/schedule.py``, ``Trainer.fit``):
1. warm start: ab initio projection matching on a fixed subset at a small box gives a volume
   and the subset's poses (fixed cost, independent of the data-set size);
2. the encoder learns on images rendered from that volume at known poses, then on the data
   too, the volume frozen, supervised by the subset's poses;
3. encoder and volume train together, the supervision fades, the loss radius marches out;
4. finish: poses for every particle (encoder + local refinement) and the final map
   (``train/finish.py``).

The ``Trainer`` holds the models, optimisers, schedule position and checkpoint state; a step's
losses are in ``train/supervision.py`` and ``losses.py``, the image formation in ``physics/``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from tqdm import tqdm

from cryoai.data.noise_spectrum import noise_model
from cryoai.data.particles import ParticleSet
from cryoai.data.training_data import Batch, TrainingData
from cryoai.io.mrc import write_map
from cryoai.losses import symmetric_loss
from cryoai.models.encoder import PoseEncoder
from cryoai.models.fouriernet import FourierNet
from cryoai.models.volume_map import volume_to_map
from cryoai.models.voxel import VoxelVolume
from cryoai.train import distributed as dist
from cryoai.train import schedule
from cryoai.train.batches import batches
from cryoai.train.checkpoint import Interrupted, load_checkpoint, save_checkpoint, sigint_at_step_end
from cryoai.train.config import TrainConfig
from cryoai.train.decoder import encode_both, loss_frequencies
from cryoai.train.finish import PoseSettings, Prior, group_operators, measure_costs, reconstruct
from cryoai.train.monitor import Monitor, start_monitor
from cryoai.train.predict import predict_poses
from cryoai.train.run_dir import RunDir
from cryoai.train.run_finish import finish_run
from cryoai.train.schedule import loss_radius, stop_message, stop_reason
from cryoai.train.supervision import pose_loss, subset_pose_loss, synthetic_batch
from cryoai.train.time_limit import END_SECONDS, WARM_SHARE, finish_reserve, keep_reserve, warm_start_images
from cryoai.train.warmstart import WarmStartConfig, warm_start


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


class Trainer:
    def __init__(self, particles: ParticleSet, cfg: TrainConfig, run: RunDir, device: str = "cpu",
                 resume: bool = False, progress: bool = True, started: float | None = None):
        self.particles, self.cfg, self.run, self.device, self.progress = particles, cfg, run, device, progress
        self.data = TrainingData(particles, cfg.train_box, cfg.encoder_box, invert=cfg.invert, seed=cfg.seed)
        cfg.train_box, cfg.encoder_box = self.data.train_box, self.data.encoder_box
        if cfg.whiten:  # the noise model: spectra and model whitened from here on (data/training_data.py)
            self.data.noise = noise_model(self.data, cfg.particle_diameter_A, cfg.seed, run.log)
            if dist.is_main() and self.data.noise is not None:
                self.data.noise.write(run.path / "noise_spectrum.txt")
        torch.manual_seed(cfg.seed)
        self.encoder, self.volume = build_models(cfg, device)
        # the group the training imposes about RELION's axes (its maps, pose losses and the finish's maps):
        # only where the warm start puts the map there (without one the frame is arbitrary, C1 until the
        # symmetric finish finds the axes); its (K, 3, 3) operators, None for C1
        self.training_symmetry = cfg.symmetry if cfg.warm_start else "C1"
        self.operators = group_operators(self.training_symmetry)
        self.opt_encoder = torch.optim.Adam(self.encoder.parameters(), lr=cfg.encoder_lr)
        self.opt_volume = torch.optim.Adam(self.volume.parameters(), lr=cfg.volume_lr)
        self.step = 0
        self.t_start = started or time.time()  # the time limit counts from here (`train`: the command's start)
        self.warm_done = False  # the warm start has run (its checkpoint saves redoing it on --resume)
        self.monitor: Monitor | None = None
        self.costs = None  # of the finish's passes, under max_minutes (time_limit.FinishCosts)
        self.reserve = None  # the finish's reserve as first planned (time_limit.FinishPlan; training_budget)
        self.position = 0.0  # where the schedule stands, 0 … 1 (see fit)
        self.train_seconds = 0.0  # wall time spent in the training loop so far
        self.elapsed_before = 0.0
        self.subset = np.zeros(0, dtype=np.int64)
        self.subset_rot = torch.zeros(0, 3, 3)
        self.subset_origin = torch.zeros(0, 2)
        self.axes_score = None  # under --symmetry: the warm start's C1 map about the axes found (final check)
        self._stream, self._stream_next = None, None  # training batches read ahead (next_batch)
        if resume:
            self._restore(load_checkpoint(run.path / "checkpoints" / "last.pt", cfg))  # refuses other settings
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
                "warm_done": self.warm_done, "axes_score": self.axes_score, "monitor": None if self.monitor is None else self.monitor.state(),
                "config": self.cfg.to_dict(), "apix": self.data.apix}

    def _restore(self, state: dict) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.volume.load_state_dict(state["volume"])
        self.opt_encoder.load_state_dict(state["opt_encoder"])
        self.opt_volume.load_state_dict(state["opt_volume"])
        self.step, self.elapsed_before = state["step"], state["elapsed"]
        self.position, self.train_seconds = state.get("position", 0.0), state.get("train_seconds", 0.0)
        self.subset, self.subset_rot, self.subset_origin = state["subset"], state["subset_rot"], state["subset_origin"]
        self.warm_done = state.get("warm_done", self.step > 0)
        self.axes_score = state.get("axes_score")
        if state.get("monitor") is not None:
            self.monitor = Monitor.from_state(state["monitor"], self.cfg.seed, self.cfg.plateau_tolerance_px)
        self.run.log(f"resumed from step {self.step}")

    # ---- stages ------------------------------------------------------------------------
    def warm_start(self) -> None:
        cfg, data = self.cfg, self.data
        rng = np.random.default_rng(cfg.seed)
        wanted, b = self.warm_start_size()
        left = self.seconds_left()  # under a time limit: the subset sized to it, a hard stop at twice its share
        size, deadline = warm_start_images(left, wanted, b), None if left is None else time.time() + 2 * WARM_SHARE * left
        if size < wanted:
            self.run.log(f"warm start sized to the time limit: {size} images, not {wanted} ({left / 60:.1f} min left)")
        self.subset = np.sort(rng.choice(len(self.particles), min(size, len(self.particles)), replace=False))
        spectra, ctf_values = data.small_box_inputs(self.subset, b)  # whitened, CTF × whitening
        t0 = time.time()
        result = warm_start(spectra, ctf_values, b, WarmStartConfig(iterations=cfg.warm_iterations, seed=cfg.seed,
                                                                    deadline=deadline, symmetry=cfg.symmetry), log=self.run.log)
        self.subset_rot, self.axes_score = result.rotations, result.axes_score
        self.subset_origin = result.origins_px * (data.train_box / b)
        self._index_subset()
        spectrum = reconstruct(data, self.subset, self.subset_rot, self.subset_origin, self.volume.oversample,
                               operators=self.operators)
        self.volume.load_spectrum(spectrum.to(self.device))
        self.warm_done = True
        record = {"step": 0, "stage": "warm_start", "seconds": time.time() - t0}
        if self.particles.rotations is not None:  # simulated or published poses: how close it came
            from cryoai.eval.poses import evaluate_poses

            errors = evaluate_poses(self.subset_rot.double().numpy(), self.particles.rotations[self.subset],
                                    symmetry=cfg.symmetry)
            record.update(rot_median_deg=errors["rot_median_deg"], frac_within_10deg=errors["frac_within_10deg"])
        self.run.log(f"warm start: {len(self.subset)} images at box {b} in {time.time() - t0:.0f} s"
                     + (f", median error vs the input poses {record['rot_median_deg']:.1f}°" if "rot_median_deg" in record else ""))
        self.run.metrics(record)

    def warm_start_size(self) -> tuple[int, int]:
        """(subset size, box) of the warm start: the config's, or where it says None, by the noise
        model: 4000 images at box 24 when the images are noise-dominated (whitened: ``data.noise``),
        else 1500 at box 20 (clean images need fewer; at box 16, noise-free 8ZPM's subset ended at
        a median 20° and 14° for seeds 0 and 1, at box 20 at 8.6° and 7.4°, for 1.6× the cost:
        ``benchmarks/warmstart_sizes.py``). The box never exceeds the training box."""
        cfg, noisy = self.cfg, self.data.noise is not None
        size = cfg.warm_subset if cfg.warm_subset is not None else (4000 if noisy else 1500)
        box = cfg.warm_box if cfg.warm_box is not None else (24 if noisy else 20)
        return size, min(box, self.data.train_box)

    def share_warm_start(self) -> None:
        """Under torchrun every rank has run the warm start with the same seed; rank 0's poses and
        volume are made everyone's, so ranks agree exactly."""
        if dist.world_size() > 1:
            dist.broadcast_tensors(self.subset_rot, self.subset_origin)
            dist.broadcast_module(self.volume)

    def radius(self) -> float:
        return loss_radius(self.cfg, self.position)

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

            count = 10**9 if self.cfg.train_past_steps else self.cfg.steps - step  # past steps: until it stops
            self._stream = batches(self.data, rows_of, count, self.cfg.workers,
                                   pin_memory=str(self.device).startswith("cuda"))
        self._stream_next = (step + 1, with_subset)
        return next(self._stream)

    def synthetic_batch(self, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` images rendered from the current volume at known poses (``supervision``), their
        shifts spread as the warm-start subset's."""
        spread = float(self.subset_origin.std()) if len(self.subset_origin) > 1 else 0.0
        return synthetic_batch(self.volume, self.data, n, spread, self.cfg.seed, step, self.device,
                               self.cfg.synthetic_noise)

    def train_step(self, step: int) -> dict:
        """One optimisation step at the current schedule position (``schedule``); its record."""
        cfg, has_subset = self.cfg, len(self.subset) > 0
        stage = schedule.stage(cfg, self.position, has_subset)
        radius = self.radius()
        self.encoder.train()
        if stage == schedule.PRETRAIN:  # encoder alone, on renders of the frozen warm-start volume
            images, rot_true, origin_true = self.synthetic_batch(step, cfg.batch_size)
            loss = pose_loss(*self.encoder(images), rot_true, origin_true, self.operators).mean()
            self._optimise(loss, train_volume=False)
            return {"step": step + 1, "stage": "pretrain", "synthetic": float(loss.detach()), "loss": float(loss.detach()),
                    "radius": radius, "rotated_won": 0.0}
        symmetric = cfg.loss == "symmetric"
        w_sup = schedule.supervision_weight(cfg, self.position, has_subset)
        batch = self.next_batch(step, w_sup > 0).to(self.device)  # this rank's share
        idx, freqs = loss_frequencies(cfg.train_box, radius, self.device)
        _, _, e1, e2, rot_both, origin_both, won = encode_both(
            self.encoder, self.volume, batch, idx, freqs, self.data.apix, symmetric, self.device)
        loss = symmetric_loss(e1, e2)[0] if symmetric else e1.mean()
        record = {"step": step + 1, "loss": float(loss.detach()), "radius": radius, "rotated_won": float(won.float().mean())}
        if w_sup > 0:  # the subset's warm-start poses, and synthetic images, supervise the encoder
            pos = self.subset_pos[batch.indices]
            sel = torch.nonzero(pos >= 0).squeeze(1)
            sup = subset_pose_loss(rot_both, origin_both, sel, self.subset_rot[pos[sel]].to(self.device),
                                   self.subset_origin[pos[sel]].to(self.device), symmetric, self.operators)
            sup_loss = sup.mean() if len(sel) else sup.sum()  # a torchrun share may hold no subset image
            if cfg.synthetic_batch:
                images, rot_true, origin_true = self.synthetic_batch(step, cfg.synthetic_batch)
                syn = pose_loss(*self.encoder(images), rot_true, origin_true, self.operators).mean()
                sup_loss = sup_loss + syn
                record["synthetic"] = float(syn.detach())
            loss = loss + w_sup * sup_loss * float(e1.detach().mean())
            record["supervision"] = float(sup_loss.detach())
        self._optimise(loss, train_volume=schedule.volume_trains(cfg, self.position, has_subset))
        return record

    def _optimise(self, loss: torch.Tensor, train_volume: bool) -> None:
        """Back-propagate ``loss``, average the gradients over ranks, step the optimisers."""
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
        rot, origin = predict_poses(self.encoder, self.volume, self.data, self.radius(),  # one start: a cheap check
                                    self.cfg.loss == "symmetric", device=self.device, progress=False, indices=rows,
                                    turns=1)
        true_origin = self.particles.origins_A[rows] if self.particles.origins_A is not None else None
        return evaluate_poses(rot, self.particles.rotations[rows], origin, true_origin, self.data.apix, self.cfg.symmetry)

    def finish(self) -> dict:
        """Final map, poses and per-particle scores, written to the run directory (``train/run_finish.py``)."""
        return finish_run(self)

    def save_checkpoint(self) -> None:
        """OUT/checkpoints/last.pt: the models, optimisers, schedule position and subset poses."""
        save_checkpoint(self.run.path / "checkpoints" / "last.pt", self._state())

    def subset_prior(self) -> Prior | None:
        """The warm-start subset's rows and its poses (RELION matrices, origins in Å), the warm
        start's or those of the last map the monitor loaded; None without a warm start."""
        if len(self.subset) == 0:
            return None
        return self.subset, (self.subset_rot.double().numpy(), self.subset_origin.double().numpy() * self.data.apix)

    def pose_settings(self) -> PoseSettings:
        """How poses are predicted; the maps symmetrised over ``training_symmetry``."""
        cfg = self.cfg
        return PoseSettings(self.radius(), cfg.loss == "symmetric", self.device, cfg.workers, self.progress,
                            symmetry=self.training_symmetry)

    def seconds_left(self) -> float | None:
        """Seconds left of the ``max_minutes`` limit (None without one), END_SECONDS kept for the outputs."""
        limit = self.cfg.max_minutes
        return 60 * limit - END_SECONDS - self.elapsed_before - (time.time() - self.t_start) if limit else None

    def training_budget(self, costs=None) -> float:
        """Seconds of training the ``max_minutes`` limit allows (inf without one) after the finish's
        reserve at its ``costs`` (``finish.measure_costs`` if None): planned on the first call
        (``time_limit.finish_reserve``), its time kept by the later ones (``keep_reserve``)."""
        cfg = self.cfg
        if not cfg.max_minutes:
            return math.inf
        self.costs = costs or measure_costs(self.encoder, self.volume, self.data, self.pose_settings())
        left = self.seconds_left()
        n = len(self.particles)
        if self.reserve is None:  # planned once; re-plans keep its time (time_limit.keep_reserve)
            plan = self.reserve = finish_reserve(self.costs, n, cfg.final_subset, cfg.final_iterations, left)
        else:
            plan = keep_reserve(self.costs, n, cfg.final_subset, cfg.final_iterations, self.reserve, left)
        budget = dist.from_main(self.train_seconds + max(left - plan.seconds, 0.0))  # rank 0's clock rules
        self.run.log(f"time limit: {left / 60:.1f} min left, the finish's reserve {plan.seconds / 60:.1f} min ({plan.rounds} of "
                     f"{cfg.final_iterations} rounds on {plan.subset} particles): training budget {budget / 60:.1f} min")
        return budget

    def monitor_check(self, budget: float) -> float:
        """A monitor check, logged and recorded; when the volume took the subset's map, the refined
        poses supervise the encoder from now on. Returns the budget re-planned with the check's
        measured cost of a pose (the machine may have slowed down)."""
        start = None  # the subset's poses so far, when the monitor watches it
        if self.monitor.load_maps and np.array_equal(self.monitor.rows, self.subset):
            start = self.subset_prior()[1]
        result = self.monitor.check(self.encoder, self.volume, self.data, self.pose_settings(), start,
                                    self.particles.rotations, self.cfg.symmetry)
        if result.loaded and np.array_equal(self.monitor.rows, self.subset):
            self.subset_rot = torch.from_numpy(result.poses[0]).float()
            self.subset_origin = torch.from_numpy(result.poses[1] / self.data.apix).float()
        self.run.metrics(result.record(self.step, self.elapsed_before + time.time() - self.t_start))
        self.run.log(f"monitor at step {self.step}: {result.summary()}")
        if budget == math.inf:
            return budget
        if self.radius() >= self.cfg.train_box / 4:  # refined as far out as the finish will: the same cost
            per_image = result.predict_seconds / len(self.monitor.rows)
            if start is None:  # the encoder's poses, refined from its in-plane starts: a finish pose
                self.costs.predict_s = per_image
            else:  # a refinement from the subset's poses (one start), as a round's: taken for a finish pose,
                self.costs.refine_s = per_image  # it cut a 20-min run's reserve from 15 to 6 min, and its rounds to 1
        return self.training_budget(self.costs)

    def log_record(self, record: dict, images_per_s: float, bar: tqdm) -> None:
        """Average a step's record over the ranks, add speed (and, at checkpoints, pose errors),
        and write it to metrics.jsonl and the log."""
        record = dist.mean_record(record)  # losses over every rank's share (every rank calls this)
        record.update(images_per_s=images_per_s, elapsed_s=self.elapsed_before + time.time() - self.t_start)
        if dist.is_main() and (self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps):
            errors = self.pose_errors()
            if errors:
                record.update({k: errors[k] for k in ("rot_median_deg", "frac_within_10deg", "trans_median_px", "hand")})
        self.run.metrics(record)
        bar.set_postfix(loss=f"{record['loss']:.4g}", img_s=f"{images_per_s:.0f}", r=f"{record['radius']:.0f}")
        self.run.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))

    def fit(self, finish: bool = True) -> dict:
        """Warm start (and a checkpoint), the training loop, then ``finish`` (unless ``finish`` is
        False: then the run ends at the loop's last checkpoint and {} is returned). The stages are placed by the schedule position: the fraction of ``steps`` done or, under
        ``max_minutes``, of the training-time budget (``training_budget``) if larger, so a time
        limit compresses the schedule. Every ``volume_every`` steps the monitor checks the map
        (``monitor_check``); ``schedule.stop_reason`` ends the loop, and the log says why.
        """
        cfg, run = self.cfg, self.run
        main = dist.is_main()  # under torchrun, rank 0 alone evaluates and writes (RunDir is inert elsewhere)
        if not self.warm_done and cfg.warm_start:
            self.warm_start()
            self.share_warm_start()
            if main:  # `--resume` continues from here instead of redoing the warm start
                self.save_checkpoint()
        if self.monitor is None:
            self.monitor = start_monitor(self.subset, len(self.particles), cfg.monitor_subset, cfg.seed,
                                         cfg.plateau_tolerance_px)
            if self.monitor is not None and self.monitor.load_maps:  # the map to beat: the warm start's
                poses = (self.subset_rot.double().numpy(), self.subset_origin.double().numpy() * self.data.apix)
                self.monitor.measure_loaded(self.data, poses, self.volume.oversample, cfg.workers)
        budget = self.training_budget()
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", disable=not (self.progress and main))
        t_window, n_window = time.time(), 0
        reason = None
        with sigint_at_step_end(enabled=dist.world_size() == 1) as interrupted:  # Ctrl-C: stop after this step
            while not interrupted():
                spent = self.train_seconds / budget if budget > 0 else 1.0
                self.position = max(self.position, min(1.0, max(self.step / cfg.steps, spent)))
                reason = stop_reason(cfg, self.step, self.position, self.train_seconds, budget,
                                     self.monitor.history if self.monitor else [])
                if reason:
                    break
                t_step = time.time()
                record = self.train_step(self.step)
                self.step += 1
                n_window += cfg.batch_size
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    rate = n_window / (time.time() - t_window)
                    t_window, n_window = time.time(), 0
                    self.log_record(record, rate, bar)
                if (self.monitor is not None and self.step % cfg.volume_every == 0
                        and self.monitor.fits(self.train_seconds, budget, self.costs)):
                    budget = self.monitor_check(budget)
                if main and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if main and self.step % cfg.volume_every == 0:
                    self.write_volume(run.path / "volumes" / f"step_{self.step:06d}.mrc")
                self.train_seconds += time.time() - t_step  # the step and its bookkeeping
                if budget < math.inf:
                    self.train_seconds = dist.from_main(self.train_seconds)  # so every rank stops together
        bar.close()
        self._stream = self._stream_next = None  # the workers exit
        if main:
            self.save_checkpoint()
        if interrupted():  # the checkpoint holds this step: `--resume` continues from it
            raise Interrupted(self.step)
        run.log(stop_message(reason, cfg, self.step, self.monitor.history if self.monitor else []))
        run.metrics({"step": self.step, "stage": "stopped", "reason": reason,
                     "elapsed_s": self.elapsed_before + time.time() - self.t_start})
        return self.finish() if finish else {}
