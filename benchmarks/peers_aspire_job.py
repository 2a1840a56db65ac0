"""ASPIRE common-lines ab initio on one particle STAR file; run in ASPIRE's own environment by
`benchmarks/peers.py` (it calls ASPIRE's public API only).

Pipeline (ASPIRE's experimental pipeline, as in its gallery): RelionSource → phase flip → [noise:
background normalisation and whitening] → contrast check → class averages (DefaultClassAvgSource:
RIR classification + brute-force rotational averaging, the best `--classes` by global variance) →
orientations by common lines (CLSyncVoting, or CommonlineSDP) → mean-estimator reconstruction.
Writes OUT/aspire_map.mrc and OUT/aspire.json (seconds per stage, map box); prints progress.

Usage: python peers_aspire_job.py particles.star --apix 2.5 -o OUT [--orient sync_voting|sdp]
       [--classes 500] [--n-nbor 50] [--n-theta 360] [--downsample 0] [--no-noise]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from aspire.abinitio import CLSyncVoting, CommonlineSDP
from aspire.denoising import DefaultClassAvgSource
from aspire.noise import AnisotropicNoiseEstimator
from aspire.reconstruction import MeanEstimator
from aspire.source import OrientedSource, RelionSource


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("star")
    p.add_argument("--apix", type=float, required=True)
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--orient", default="sync_voting", choices=["sync_voting", "sdp"])
    p.add_argument("--classes", type=int, default=500)
    p.add_argument("--n-nbor", type=int, default=50)
    p.add_argument("--n-theta", type=int, default=360)
    p.add_argument("--downsample", type=int, default=0, help="box to work at (0: the data's)")
    p.add_argument("--no-noise", action="store_true",
                   help="skip background normalisation and whitening (undefined on noise-free images)")
    args = p.parse_args()
    out = Path(args.out)
    stages: dict[str, float] = {}
    t = time.time()

    def stage(name: str) -> None:
        nonlocal t
        stages[name] = time.time() - t
        print(f"[aspire] {name}: {stages[name]:.1f} s", flush=True)
        t = time.time()

    src = RelionSource(args.star, pixel_size=args.apix, n_workers=1)
    if args.downsample and args.downsample < src.L:
        src = src.downsample(args.downsample)
    src = src.phase_flip().cache()
    if not args.no_noise:
        src = src.normalize_background().cache()
        src = src.whiten(AnisotropicNoiseEstimator(src)).cache()
    src = src.invert_contrast().cache()
    stage("preprocess")

    avgs = DefaultClassAvgSource(src, n_nbor=args.n_nbor)
    avgs = avgs[: min(args.classes, src.n)].cache()
    stage("class averages")

    if args.orient == "sdp":
        est = CommonlineSDP(avgs, n_theta=args.n_theta)
    else:
        est = CLSyncVoting(avgs, n_theta=args.n_theta)
    oriented = OrientedSource(avgs, est)
    oriented.rotations  # orientation estimation is lazy: force it here to time it
    stage("common lines")

    vol = MeanEstimator(oriented).estimate()
    stage("mean estimator")

    path = out / "aspire_map.mrc"
    vol.save(str(path), overwrite=True)
    data = vol.asnumpy()[0]
    info = {"map": str(path), "map_box": int(data.shape[0]), "stages_s": stages, "n": int(src.n),
            "classes": int(avgs.n), "noise_steps": not args.no_noise, "map_std": float(np.std(data))}
    (out / "aspire.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
