"""The report's opening paragraph and key-value table: what was trained, how, and how well.

Everything here is plain text (the caller escapes it for HTML); numbers that are unknown are
left out of the sentences rather than printed as "None".
"""

from __future__ import annotations

import numpy as np

from cryoai.report.run import Run


def _ctf(run: Run) -> str:
    """'yes (defocus 0.8–2.5 µm, 300 kV)', 'no', or 'unknown' (neither STAR readable)."""
    particles = run.poses if run.poses is not None else run.input
    if particles is None:
        return "unknown"
    ctf = particles.ctf
    if ctf is None:
        return "no"
    df = (ctf.defocus_u_A + ctf.defocus_v_A) / 2e4
    return f"yes (defocus {df.min():.2f}–{df.max():.2f} µm, {ctf.voltage_kV[0]:g} kV)"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def facts(run: Run, poses: dict | None = None, truth: dict | None = None, level: float | None = None,
          enclosed: tuple[float, float] | None = None) -> list[tuple[str, str]]:
    """(label, value) rows for the summary table."""
    info, cfg = run.info, run.config
    rows = [("status", status(run))]
    half = half_map_text(run)
    if half:
        rows.append(("half-map resolution", half))
    rows.append(("particles", f"{info.get('n_particles', '?')} from {info.get('particles', '?')}"))
    apix = info.get("apix")
    box = f"{info.get('box', '?')} px"
    rows.append(("box, pixel size", f"{box}, {apix:.3f} Å/px" if apix else box))
    rows.append(("CTF", _ctf(run)))
    rows.append(("volume model, loss", f"{cfg.get('volume', '?')}, {cfg.get('loss', '?')}"))
    steps = run.metrics[-1]["step"] if run.metrics else 0
    rows.append(("steps", f"{steps} of {cfg.get('steps', '?')} (batch {cfg.get('batch_size', '?')}, "
                          f"training box {cfg.get('train_box', '?')} px)"))
    rows.append(("device", str(info.get("device", "?"))))
    elapsed = run.last("elapsed_s")
    if elapsed is not None:
        warm = f" (warm start {_minutes(run.warm_start_s)})" if run.warm_start_s else ""
        rows.append(("wall time", _minutes(elapsed) + warm))
    rates = [r["images_per_s"] for r in run.metrics if r.get("images_per_s")]
    if rates:
        rows.append(("throughput", f"{np.median(rates):.0f} images/s (median over log intervals)"))
    if run.metrics:
        rows.append(("final loss", f"{run.metrics[-1]['loss']:.4g}"))
    pose_text = _pose_text(run, poses)
    if pose_text:
        rows.append(("pose error", pose_text))
    if truth is not None:
        rows.append(("FSC vs truth", _fsc_text(truth)))
    if level is not None and enclosed is not None:
        rows.append(("contour (view.cxc)", f"{level:.4g}: {enclosed[0]:.3g} Å³ ≈ {enclosed[1]:.3g} kDa of protein"))
    rows.append(("cryoai", f"{info.get('cryoai_version', '?')}, started {info.get('started', '?')}"))
    return rows


def status(run: Run) -> str:
    """'finished' only with the final check's verdict beside it (a warning is never left out)."""
    if not run.final:
        return "in progress (no volume.mrc yet)"
    verdict = run.verdict
    if verdict is None:
        return "finished; no final check was recorded (no verdict.json), so nothing says whether to trust it"
    if verdict["verdict"] == "warn":
        return f"finished, but WARNING: {len(verdict['warnings'])} check(s) say the map or poses may be unreliable"
    return "finished; the checks without ground truth pass"


def half_map_text(run: Run) -> str | None:
    """'6.10 Å (2.44 px) at FSC 0.143; halves share one refinement: optimistic, …' or None."""
    v = run.verdict
    if v is None:
        return None
    res = (f"{v['resolution_A']:.2f} Å ({v['resolution_px']:.2f} px)" if v.get("resolution_A") is not None
           and np.isfinite(v["resolution_A"]) else "below 0.143 from the first shell")
    return f"{res} at FSC 0.143; {v['label']}"


def _pose_text(run: Run, poses: dict | None) -> str | None:
    if poses is not None:
        text = (f"median {poses['rot_median_deg']:.1f}°, {100 * poses['frac_within_10deg']:.0f}% within 10° "
                f"({poses['n_particles']} particles, hand {poses['hand']})")
        if poses.get("trans_median_A") is not None:
            text += f"; shifts median {poses['trans_median_A']:.2f} Å ({poses['trans_median_px']:.2f} px)"
        return text
    rot = run.last("rot_median_deg")
    if rot is None:
        return None
    within = run.last("frac_within_10deg")
    extra = f", {100 * within:.0f}% within 10°" if within is not None else ""
    return f"median {rot:.1f}°{extra} (at the last checkpoint, on up to 500 particles)"


def _fsc_text(truth: dict) -> str:
    def one(t: float) -> str:
        a, p = truth.get(f"res_{t}_A"), truth.get(f"res_{t}_px")
        return f"{a:.2f} Å ({p:.2f} px)" if a is not None else "below the threshold at every shell"

    return f"0.5 at {one(0.5)}; 0.143 at {one(0.143)} (after alignment, hand {truth.get('hand')})"


def paragraph(run: Run, poses: dict | None = None, truth: dict | None = None) -> str:
    """A few sentences a cryo-EM user reads first."""
    info, cfg = run.info, run.config
    apix = info.get("apix")
    parts = [f"cryoai reconstructed a map ab initio from {info.get('n_particles', '?')} particles "
             f"(box {info.get('box', '?')} px" + (f", {apix:.3f} Å/px" if apix else "") + f", CTF {_ctf(run)})."]
    steps = run.metrics[-1]["step"] if run.metrics else 0
    train_apix = apix * info["box"] / cfg["train_box"] if apix and info.get("box") and cfg.get("train_box") else None
    parts.append(f"It trained a {cfg.get('volume', '?')} volume with the {cfg.get('loss', '?')} loss for {steps} of "
                 f"{cfg.get('steps', '?')} steps on {info.get('device', '?')}, at a training box of "
                 f"{cfg.get('train_box', '?')} px" + (f" ({train_apix:.2f} Å/px, Nyquist {2 * train_apix:.1f} Å)."
                                                      if train_apix else "."))
    elapsed = run.last("elapsed_s")
    rates = [r["images_per_s"] for r in run.metrics if r.get("images_per_s")]
    if elapsed is not None:
        parts.append(f"Wall time {_minutes(elapsed)}" + (f", {np.median(rates):.0f} images/s" if rates else "")
                     + f", final loss {run.metrics[-1]['loss']:.4g}.")
    pose_text = _pose_text(run, poses)
    if pose_text:
        parts.append(f"Pose error against the input's ground-truth poses: {pose_text}.")
    if truth is not None:
        parts.append(f"FSC of the final map against the truth map: {_fsc_text(truth)}.")
    half = half_map_text(run)
    if half:
        parts.append(f"Half-map resolution without ground truth: {half}.")
    if run.final:
        parts.append(f"Status: {status(run)}.")
    else:
        parts.append("The run has not finished: the figures show its latest state.")
    return " ".join(parts)
