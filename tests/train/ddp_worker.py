"""One torchrun rank of tests/train/test_distributed.py: trains the tiny set and saves what this rank holds.

python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py PARTICLES.star OUT
writes OUT/run (rank 0's run directory) and OUT/rank{R}.pt: the encoder and volume before
training (after the warm start), just before ``finish``, and the final map and poses.
"""

import faulthandler
import sys
from pathlib import Path

import torch

from cryoai.data.particles import load_particles
from cryoai.train import batches as batches_module
from cryoai.train import distributed as dist
from cryoai.train.run_dir import RunDir
from cryoai.train.trainer import Trainer
from ddp_cli import gloo_threads  # this file's folder is on sys.path when run as a script
from helpers import tiny_config  # tests/ is on PYTHONPATH (test_distributed.torchrun)


def forbidden_loader(*args, **kwargs):
    raise AssertionError("a DataLoader worker was forked from a rank of a process group")


def copy(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def main(star: str, out: str) -> None:
    dist.init("cpu")
    assert dist.world_size() == 2
    out = Path(out)
    # workers=1 is asked for, but under a process group no worker may be forked (batches.batches)
    batches_module.DataLoader = forbidden_loader
    trainer = Trainer(load_particles(star), tiny_config(workers=1), RunDir(out / "run", quiet=True), progress=False)
    saved = {"encoder_init": copy(trainer.encoder)}
    share, finish = trainer.share_warm_start, trainer.finish

    def share_and_keep():
        share()
        saved["volume_warm"] = copy(trainer.volume)

    def keep_and_finish():
        saved.update(encoder_trained=copy(trainer.encoder), volume_trained=copy(trainer.volume))
        return finish()

    trainer.share_warm_start, trainer.finish = share_and_keep, keep_and_finish
    result = trainer.fit()
    saved.update(volume_final=copy(trainer.volume), rotations=result["rotations"], origins_A=result["origins_A"])
    torch.save(saved, out / f"rank{dist.rank()}.pt")
    dist.cleanup()
    assert not gloo_threads(), f"process group still alive after cleanup: {gloo_threads()}"


if __name__ == "__main__":
    faulthandler.dump_traceback_later(90, exit=True)  # a hung rank prints its stacks (tests/train/test_distributed.py shows them)
    main(*sys.argv[1:])
