"""FSC files a cryo-EM user recognises: PREFIX.txt (a RELION data_fsc STAR table:
rlnSpectralIndex, rlnResolution in 1/Å, rlnAngstromResolution, rlnFourierShellCorrelation) and
PREFIX.png (the curve against 1/Å, labelled in Å)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cryoai.eval.fsc import shell_frequencies  # noqa: E402
from cryoai.io.atomic import atomic_path  # noqa: E402
from cryoai.io.star import write_star  # noqa: E402


def write_fsc_files(prefix: str, curve: np.ndarray, box: int, apix: float, title: str = "") -> tuple[Path, Path]:
    """PREFIX.txt (STAR data_fsc) and PREFIX.png (FSC vs 1/Å, Å tick labels), written atomically."""
    freq = shell_frequencies(box, apix)
    with np.errstate(divide="ignore"):
        ang = np.where(freq > 0, 1.0 / np.where(freq > 0, freq, 1.0), 999.0)
    table = pd.DataFrame({"rlnSpectralIndex": np.arange(len(curve)), "rlnResolution": freq,
                          "rlnAngstromResolution": ang, "rlnFourierShellCorrelation": curve})
    txt, png = Path(f"{prefix}.txt"), Path(f"{prefix}.png")
    write_star(txt, {"fsc": table})

    with atomic_path(png) as tmp:
        tmp.write_bytes(fsc_curve(curve, freq, title))
    return txt, png


def fsc_curve(curve: np.ndarray, freqs: np.ndarray, title: str = "") -> bytes:
    """FSC against spatial frequency (axis linear in 1/Å, labelled in Å), lines at 0.5 and 0.143."""
    curve, freqs = np.asarray(curve), np.asarray(freqs)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(freqs, curve, color="C0", lw=1.5)
    for t, style in ((0.5, "--"), (0.143, ":")):
        ax.axhline(t, color="grey", ls=style, lw=1, label=f"FSC = {t}")
    ticks = np.linspace(0, freqs[-1], 6)[1:]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{1 / f:.1f}" for f in ticks])
    ax.set_xlim(0, freqs[-1])
    ax.set_ylim(min(-0.05, float(curve.min()) - 0.02), 1.05)
    ax.set(xlabel="resolution (Å); axis linear in 1/Å", ylabel="Fourier shell correlation")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
