"""Encoder throughput: float32 vs bfloat16 autocast (``--precision bf16``) vs ``--compile``.

One training step of the encoder as `cryoai train` runs it (forward of a batch and its π-rotated
copy, backward, Adam step) and one forward in eval mode (what `predict` does), in images/s,
after warm-up (compilation excluded, its time printed). On CUDA when present, else the CPU.

Usage: python benchmarks/encoder_speed.py [--box 64] [--batch 128] [--widths 32,64,128,256]
       [--steps 20] [--device auto]
Run it alone on the machine: timings mean nothing with other jobs beside it.
"""

from __future__ import annotations

import argparse
import time

import torch

from cryoai.models.encoder import PoseEncoder


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(encoder: PoseEncoder, images: torch.Tensor, steps: int, device: str) -> tuple[float, float, float]:
    """(seconds of the first train and eval calls, train images/s, eval images/s)."""
    opt = torch.optim.Adam(encoder.parameters(), lr=1e-4)

    def train_step() -> None:
        rot, origin = encoder(images)
        loss = rot.square().sum() + origin.square().sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def eval_step() -> None:
        encoder(images)

    t0 = time.perf_counter()
    encoder.train()
    train_step()
    encoder.eval()
    eval_step()
    sync(device)
    first = time.perf_counter() - t0
    rates = []
    for mode, step in (("train", train_step), ("eval", eval_step)):
        encoder.train(mode == "train")
        step()
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        rates.append(steps * len(images) / (time.perf_counter() - t0))
    return first, rates[0], rates[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--box", type=int, default=64)
    p.add_argument("--batch", type=int, default=128, help="images per step (the symmetric loss doubles a batch)")
    p.add_argument("--widths", default="32,64,128,256")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = p.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    widths = tuple(int(w) for w in args.widths.split(","))
    images = torch.randn(args.batch, args.box, args.box, device=device)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"## encoder box {args.box}, widths {widths}, batch {args.batch}, {name}, torch {torch.__version__}")
    print("| variant | first call (s) | train images/s | eval images/s |")
    print("|---|---|---|---|")
    for variant in ("fp32", "bf16", "compile", "bf16+compile"):
        torch.manual_seed(0)
        encoder = PoseEncoder(args.box, widths=widths).to(device)
        encoder.bf16 = "bf16" in variant
        if "compile" in variant:  # as build_models does
            encoder.features = torch.compile(encoder.features)
        first, train, infer = measure(encoder, images, args.steps, device)
        print(f"| {variant} | {first:.1f} | {train:.0f} | {infer:.0f} |")


if __name__ == "__main__":
    main()
