"""The outputs of benchmarks/peers.py: the markdown table (one line per method × data set × N, then
the time-to-resolution curves), printed and written to OUT/peers.md, every number to OUT/peers.json."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from peers_score import Row


def fmt_time(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.0f} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h")


def table(rows: list[Row]) -> str:
    """The markdown table (one line per method × dataset × N), then the time-to-resolution curves."""
    lines = ["| method | dataset | N | wall | per image | FSC=0.5 vs truth | status / notes |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        res = f"{r.res_px:.2f} px ({r.res_A:.1f} Å)" if r.res_px is not None else ("no 0.5 crossing" if r.map else "–")
        per = f"{r.per_image_s * 1000:.1f} ms" if r.per_image_s is not None else "–"
        epochs = ", ".join(f"{k} epoch {fmt_time(v)}" for k, v in r.per_epoch_s.items()) if r.method.startswith("drgn") else ""
        notes = "; ".join(x for x in [r.status, epochs, r.notes.strip(" ;")] if x)
        lines.append(f"| {r.method} | {r.dataset} | {r.n} | {fmt_time(r.wall_s)} | {per} | {res} | {notes} |")
    curves = [r for r in rows if r.curve]
    if curves:
        lines += ["", "Time to resolution (maps written during the run; FSC=0.5 px vs truth):", ""]
        for r in curves:
            pts = ", ".join(f"{fmt_time(t)}: " + (f"{px:.2f}" if px is not None else "no 0.5 crossing") for t, px in r.curve)
            lines.append(f"- {r.method}, {r.dataset}, N={r.n}: {pts}")
    return "\n".join(lines)


def write_outputs(out: Path, rows: list[Row], versions: dict, args) -> None:
    """Print the table and write OUT/peers.md and OUT/peers.json."""
    text = (f"# Peers benchmark ({datetime.now():%Y-%m-%d %H:%M}, one CPU thread (RELION: --j {args.relion_threads} threads per process), limit {args.minutes:g} min per run)\n\n"
            f"Versions: {json.dumps(versions)}\n\n{table(rows)}\n")
    print("\n" + text, flush=True)
    (out / "peers.md").write_text(text)
    (out / "peers.json").write_text(json.dumps({"versions": versions, "rows": [asdict(r) for r in rows]}, indent=1))
