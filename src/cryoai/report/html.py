"""``write_report``: OUT/report.html, one self-contained page summarising a training run.

The page needs nothing but itself: figures are PNGs inlined as ``data:`` URIs, the style sheet
is inline and nothing is fetched from the network, so it can be mailed or opened from a
cluster's file share. A short inline script sets ``<body data-images-ok>`` to "true" once every
figure has decoded (a check for headless browsers). OUT/view.cxc opens the map in ChimeraX.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import numpy as np

from cryoai.eval.fsc_files import fsc_curve
from cryoai.io.atomic import atomic_path
from cryoai.io.mrc import read_map
from cryoai.report import chimerax, plots, summary
from cryoai.report.run import (Run, compare_poses, compare_truth_map, find_truth_map, load_run, loss_band_A,
                               training_apix)

MAX_SNAPSHOTS = 6

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 2em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
p.lead { font-size: 1.05em; background: #f4f7fb; padding: 0.8em 1em; border-left: 4px solid #4a7bb7; }
table.facts { border-collapse: collapse; margin: 1em 0; }
table.facts th { text-align: left; padding: 0.2em 1.2em 0.2em 0; color: #555; font-weight: normal; }
table.facts td { padding: 0.2em 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.92em; max-width: 900px; }
code { background: #f2f2f2; padding: 0 0.25em; } .notes { color: #8a5a00; }
div.verdict { padding: 0.8em 1.2em; margin: 1em 0; border-radius: 4px; font-size: 1.05em; }
div.verdict.warn { background: #fdecea; border: 2px solid #c0392b; color: #611a15; }
div.verdict.pass { background: #edf7ed; border: 1px solid #4caf50; color: #1e4620; }
div.verdict.none { background: #fff8e1; border: 1px solid #f0ad4e; color: #5c4400; }
table.checks { border-collapse: collapse; margin: 1em 0; font-size: 0.95em; }
table.checks th, table.checks td { border-bottom: 1px solid #eee; padding: 0.3em 0.8em 0.3em 0; text-align: left;
                                   vertical-align: top; }
table.checks td.warn { color: #c0392b; font-weight: bold; } table.checks td.pass { color: #2e7d32; }
"""

SCRIPT = """
document.body.dataset.imagesOk = "pending";
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.dataset.imagesOk = String(imgs.every(function (i) { return i.complete && i.naturalWidth > 0; }));
});
"""


def _figure(png: bytes, alt: str, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _pick_snapshots(snapshots: list[tuple[int, Path]], n: int = MAX_SNAPSHOTS) -> list[tuple[int, Path]]:
    """Up to ``n`` evenly spaced snapshots, always including the first and the last."""
    if len(snapshots) <= n:
        return snapshots
    idx = np.unique(np.round(np.linspace(0, len(snapshots) - 1, n)).astype(int))
    return [snapshots[i] for i in idx]


def _training_figure(run: Run) -> str:
    m = run.metrics
    minutes = [r.get("elapsed_s", 0.0) / 60 for r in m]
    band = loss_band_A(run)
    checked = [r for r in m if r.get("rot_median_deg") is not None]
    png = plots.training_curves(
        minutes, [r["loss"] for r in m], band if any(b is not None for b in band) else None,
        [r.get("elapsed_s", 0.0) / 60 for r in checked] or None,
        [r["rot_median_deg"] for r in checked] or None,
        [r.get("frac_within_10deg", np.nan) for r in checked] or None)
    caption = ("Left: training loss (log scale). Middle: the finest detail (Å) the loss compares; the band "
               "widens from 1/8 to 1/2 of the training box's Nyquist as training proceeds.")
    if checked:
        caption += (" Right: median pose error against the input's ground-truth poses (up to 500 particles) at each "
                    "checkpoint, after registering frame and hand (dashed: % within 10°).")
    return _figure(png, "training curves", caption)


def _map_sections(run: Run, vol: np.ndarray, apix: float) -> list[str]:
    name = "volume.mrc" if run.final else run.volume_path.name
    rel = run.volume_path.relative_to(run.path).as_posix()
    state = "the final map" if run.final else "the latest snapshot; the run has not written volume.mrc yet"
    out = ["<h2>Map</h2>", f"<p><code>{html.escape(rel)}</code>: {state}.</p>", _figure(
        plots.map_views(vol, f"{name}: box {vol.shape[0]} px, {apix:.2f} Å/px"), "map slices and projections",
        "Top: central slices through the map (xy, xz, yz). Bottom: projections (sums) along z, y and x. The map's "
        "frame and hand are arbitrary, as for any ab initio reconstruction.")]
    chosen = _pick_snapshots(run.snapshots)
    if chosen:
        rows = [(f"step {step}", read_map(p)[0]) for step, p in chosen]
        if run.final:
            rows.append(("final", vol))
        out += ["<h2>Map during training</h2>", _figure(
            plots.snapshot_gallery(rows), "map snapshots",
            f"Snapshots written during training ({len(chosen)} of {len(run.snapshots)}, evenly spaced), with central "
            "slices and projections as above; each row is scaled to its own grey range.")]
    return out


def _pose_sections(run: Run, poses: dict | None) -> list[str]:
    out = []
    if run.poses is not None and run.poses.rotations is not None:
        t = run.poses.table
        ox = t["rlnOriginXAngst"].to_numpy(float) if "rlnOriginXAngst" in t else None
        oy = t["rlnOriginYAngst"].to_numpy(float) if "rlnOriginYAngst" in t else None
        psi = t["rlnAnglePsi"].to_numpy(float)
        out += ["<h2>Predicted poses</h2>", _figure(
            plots.view_directions(run.poses.rotations), "viewing directions",
            "Viewing directions of all particles in <code>particles.star</code> on an equal-area (Mollweide) map; "
            "every bin covers the same solid angle, so colour is proportional to density. Gaps mean missing views; "
            "a single bright spot often means the encoder collapsed to one view."),
            _figure(plots.pose_histograms(psi, ox, oy), "psi and shift histograms",
                    "The in-plane angle psi (should be roughly uniform) and the predicted origins "
                    "(rlnOriginX/YAngst; centred particles give narrow peaks at 0).")]
    if poses is not None:
        out += ["<h2>Pose errors against the ground truth</h2>", _figure(
            plots.pose_error_histograms(poses["errors_deg"], poses["trans_errors_A"]), "pose error histograms",
            f"Angle between each predicted pose and the ground truth of <code>{html.escape(str(poses['source']))}"
            f"</code> after one global rotation and the hand ({poses['hand']}) are fitted, on "
            f"{poses['n_particles']} particles; shift errors compare origins directly.")]
    return out


def _truth_section(truth: dict) -> list[str]:
    from cryoai.eval.fsc import shell_frequencies

    freqs = shell_frequencies(truth["box"], truth["apix"])
    title = f"final map vs {Path(truth['path']).name} (aligned, hand {truth['hand']})"
    return ["<h2>FSC against the truth</h2>", _figure(
        fsc_curve(truth["fsc"], freqs, title), "FSC curve",
        f"Fourier shell correlation of the final map with <code>{html.escape(str(truth['path']))}</code>, "
        "resampled to the map's box and voxel size, after aligning the map onto it (rotation, shift, hand; "
        f"search {truth['search']}). "
        "Against a known truth the 0.5 threshold applies; 0.143 is shown for comparison with half-map FSCs.")]


def _verdict_box(run: Run) -> str:
    """The box at the top of the page: every warning of the final check, or that all pass."""
    v = run.verdict
    if v is None:
        if not run.final:
            return ""
        return ('<div class="verdict none"><b>No final check.</b> This run wrote no <code>verdict.json</code> '
                "(it predates the check): nothing here says whether the map and poses can be trusted.</div>")
    if v["verdict"] == "warn":
        items = "".join(f"<li>{html.escape(w)}</li>" for w in v["warnings"])
        return ('<div class="verdict warn"><b>WARNING: this run may have failed.</b> The checks that need no '
                f"ground truth flag it:<ul>{items}</ul>A map from such a run can look plausible and still be "
                "wrong; see <i>Checks without ground truth</i> below.</div>")
    return ('<div class="verdict pass"><b>The checks without ground truth pass</b> (half-map resolution, '
            "non-spherical agreement, viewing directions, pose stability). They cannot prove the map right; "
            "see <i>Checks without ground truth</i> below.</div>")


def _checks_section(run: Run) -> list[str]:
    """The half-map FSC curves and the table of checks (``eval/diagnostics.py``)."""
    from cryoai.eval.fsc import shell_frequencies

    v = run.verdict
    freqs = shell_frequencies(v["box"], v["apix"])
    rows = "".join(f'<tr><td>{html.escape(d["name"])}</td><td>{d["value"]:.3g} {html.escape(d["unit"])}</td>'
                   f'<td>{d["threshold"]:g}</td><td class="{d["verdict"]}">{d["verdict"]}</td>'
                   f'<td>{html.escape(d["explanation"])}</td></tr>' for d in v["diagnostics"])
    return ["<h2>Checks without ground truth</h2>",
            f"<p>Half maps: <code>volume_half1.mrc</code>, <code>volume_half2.mrc</code> ({html.escape(v['label'])}); "
            "their FSC in <code>fsc_halves.txt</code>.</p>",
            _figure(plots.half_map_fsc(freqs, v["fsc"], v["anisotropic_fsc"], f"half-map FSC ({v['label']})"),
                    "half-map FSC",
                    "Blue: FSC of two half maps, each reconstructed from the final poses of a random half of the "
                    "particles; the resolution is read at 0.143. Red: the same after removing each half map's "
                    "spherical average. Random poses make every half map the molecule's spherical average, which "
                    "still agrees between halves at low resolution (blue stays high there), but leaves nothing "
                    "non-spherical to agree (red near 0). Where the curves coincide, the map's agreement is all "
                    "non-spherical. Both come from one refinement unless the run used --halves: refined poses "
                    "of pure noise give curves as high, so read them with the other checks."),
            '<table class="checks"><tr><th>check</th><th>value</th><th>threshold</th><th>verdict</th>'
            f"<th>what it means</th></tr>{rows}</table>"]


def _files(run: Run) -> str:
    names = ["volume.mrc", "volume_half1.mrc", "volume_half2.mrc", "fsc_halves.txt", "verdict.json", "particles.star",
             "view.cxc", "log.txt", "metrics.jsonl", "config.yaml"]
    items = [f'<li><a href="{n}"><code>{n}</code></a></li>' for n in names if (run.path / n).is_file()]
    return ("<h2>Files</h2><ul>" + "".join(items) + "</ul><p>To look at the map in 3D: <code>chimerax "
            f"{html.escape(str(run.path / 'view.cxc'))}</code>.</p>")


def write_report(run_dir: str | os.PathLike, truth_map: str | None = None) -> Path:
    """Write ``run_dir``/report.html (and view.cxc when there is a map); return the report's path.

    ``truth_map``: a ground-truth MRC to compare the final map with; by default the
    ``truth.mrc`` beside the input STAR (as ``cryoai simulate`` writes) when there is one.
    Raises InputError when ``run_dir`` is not a training run folder or ``truth_map`` is missing.
    """
    run = load_run(run_dir)
    truth_path = find_truth_map(run, truth_map)
    poses = compare_poses(run)
    vol = apix = None
    level = enclosed = truth = None
    if run.volume_path is not None:
        vol, apix = read_map(run.volume_path)
        apix = apix if apix > 0 else (training_apix(run) or 1.0)
        level = chimerax.write_view_script(run.path / "view.cxc", run.volume_path, vol, apix)
        enclosed = chimerax.enclosed(vol, level, apix)
        if truth_path is not None and run.final:
            truth = compare_truth_map(vol, apix, truth_path, poses)
    if truth_path is not None and truth is None:
        run.notes.append(f"the FSC against {truth_path} is computed once the run has written volume.mrc")
    body = [f"<h1>cryoai run {html.escape(run.path.resolve().name)}</h1>", _verdict_box(run),
            f'<p class="lead">{html.escape(summary.paragraph(run, poses, truth))}</p>',
            '<table class="facts">' + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                                              for k, v in summary.facts(run, poses, truth, level, enclosed))
            + "</table>"]
    if run.notes:
        body.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in run.notes) + "</ul>")
    if run.verdict is not None:
        body += _checks_section(run)
    if run.metrics:
        body += ["<h2>Training</h2>", _training_figure(run)]
    if vol is not None:
        body += _map_sections(run, vol, apix)
    if truth is not None:
        body += _truth_section(truth)
    body += _pose_sections(run, poses)
    body.append(_files(run))
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>cryoai report: {html.escape(run.path.resolve().name)}</title><style>{CSS}</style></head>\n"
            "<body>\n" + "\n".join(body) + f"\n<script>{SCRIPT}</script>\n</body></html>\n")
    out = run.path / "report.html"
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
