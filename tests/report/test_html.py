"""``cryoai report``: a fake but realistic run folder → a self-contained report.html and view.cxc.

The run: 300 particles at box 48 (2 Å/px) with a CTF, trained at box 24 (4 Å/px); the input
STAR holds ground-truth poses and a truth.mrc lies beside it (as `cryoai simulate` writes);
the predicted poses are the truth in another frame plus a few degrees of noise. The last test
renders the page in headless Chromium where it is installed.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
import torch
import yaml
from PIL import Image

from cryoai.cli.main import main
from cryoai.geometry.rotations import euler_to_matrix, matrix_to_euler, random_rotations
from cryoai.io.mrc import write_map
from cryoai.report.chimerax import contour_level

N, BOX, APIX, TRAIN_BOX = 300, 48, 2.0, 24
FINAL_LOSS = 0.012345
BLOBS = [((10, 0, 0), 5.0, 1.0), ((-6, 10, 2), 3.6, 0.8), ((0, -8, 10), 3.0, 1.2), ((-4, -6, -12), 4.4, 0.6)]  # Å


pytestmark = pytest.mark.usefixtures("one_thread")


def blob_map(L: int, apix: float, sharpness: float = 1.0, G: np.ndarray | None = None) -> np.ndarray:
    """Asymmetric Gaussian blobs placed in Å, centre at voxel L//2; with G, the map V(w) = V*(G·w)
    in the frame of a run whose poses are A = A*·G (the truth V* is V(Gᵀ·u))."""
    i = (np.arange(L) - L // 2) * apix
    z, y, x = np.meshgrid(i, i, i, indexing="ij")
    G = np.eye(3) if G is None else G
    return sum(a * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * (s * sharpness) ** 2))
               for (cx, cy, cz), s, a in ((G.T @ np.array(c, float), s, a) for c, s, a in BLOBS)).astype(np.float32)


def write_star(path: Path, names, A, origins_A, rng) -> None:
    rot, tilt, psi = matrix_to_euler(A)
    particles = pd.DataFrame({
        "rlnImageName": names, "rlnOpticsGroup": 1, "rlnAngleRot": rot, "rlnAngleTilt": tilt, "rlnAnglePsi": psi,
        "rlnOriginXAngst": origins_A[:, 0], "rlnOriginYAngst": origins_A[:, 1],
        "rlnDefocusU": rng.uniform(8000, 25000, len(names)), "rlnDefocusAngle": 0.0})
    particles["rlnDefocusV"] = particles["rlnDefocusU"] - 100
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], "rlnImagePixelSize": [APIX],
                           "rlnImageSize": [BOX], "rlnImageDimensionality": [2], "rlnVoltage": [300.0],
                           "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1]})
    starfile.write({"optics": optics, "particles": particles}, path, overwrite=True)


def make_run(root: Path, final: bool = True) -> Path:
    """data/{particles.star, truth.mrc} and OUT/ as `cryoai train` leaves it."""
    rng = np.random.default_rng(0)
    data, out = root / "data", root / "OUT"
    (out / "volumes").mkdir(parents=True)
    data.mkdir()
    names = [f"{i + 1:06d}@particles.mrcs" for i in range(N)]
    truth_A, truth_o = random_rotations(N, rng), rng.normal(0, 3, (N, 2))
    write_star(data / "particles.star", names, truth_A, truth_o, rng)
    write_map(data / "truth.mrc", blob_map(BOX, APIX), APIX)
    cfg = {"volume": "voxel", "loss": "symmetric", "train_box": TRAIN_BOX, "batch_size": 64, "steps": 1000}
    info = {"cryoai_version": "0.1.0", "command": "cryoai train data/particles.star -o OUT",
            "started": "2025-01-01T00:00:00+00:00", "particles": str(data / "particles.star"), "n_particles": N,
            "box": BOX, "apix": APIX, "device": "cpu", "config": cfg}
    (out / "config.yaml").write_text(yaml.safe_dump(info, sort_keys=False))
    lines = [{"step": 0, "stage": "warm_start", "seconds": 42.0}]
    for k, step in enumerate(range(100, 1001, 100)):
        rec = {"step": step, "loss": 0.5 * 0.7**k, "radius": 3 + 9 * step / 1000, "rotated_won": 0.5,
               "images_per_s": 950.0 + k, "elapsed_s": 42.0 + 12.0 * k}
        if step % 200 == 0:
            rec.update(rot_median_deg=60.0 / (k + 1), frac_within_10deg=k / 10, trans_median_px=0.5, hand="same")
        lines.append(rec)
    lines[-1]["loss"] = FINAL_LOSS
    (out / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n{\"step\": 10")  # torn line
    G = euler_to_matrix(20, 70, 150)  # the run's frame: predicted poses A = A*·G (+ noise)
    for step, sharp in ((500, 2.0), (1000, 1.2)):
        write_map(out / "volumes" / f"step_{step:06d}.mrc", blob_map(TRAIN_BOX, 2 * APIX, sharp, G), 2 * APIX)
    if final:
        write_map(out / "volume.mrc", blob_map(TRAIN_BOX, 2 * APIX, G=G), 2 * APIX)
        noise = euler_to_matrix(*rng.normal(0, 2, (3, N)))
        write_star(out / "particles.star", names, truth_A @ G @ noise, truth_o + rng.normal(0, 0.5, (N, 2)), rng)
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = make_run(tmp_path_factory.mktemp("run"))
    torch.set_num_threads(1)
    assert main(["report", str(out)]) == 0
    return out / "report.html"


def test_report_is_self_contained_with_valid_pngs(report):
    page = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<link" not in page and "@import" not in page
    srcs = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", page)
    assert len(srcs) == len(re.findall(r"<img\b", page)) >= 6
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(png)) as im:
            im.verify()


def test_report_summarises_the_run(report):
    text = re.sub(r"<[^>]+>", " ", report.read_text())
    for needle in ("300 particles", "box 48 px", "2.000 Å/px", "CTF yes", "300 kV", "voxel volume", "symmetric loss",
                   "1000 of 1000 steps", "on cpu", "wall time", "images/s", f"final loss {FINAL_LOSS:.4g}",
                   "Pose error", "hand same", "FSC", "0.5 at", "Å (", "px)"):
        assert needle.lower() in text.lower(), needle
    median = float(re.search(r"median ([\d.]+)°", text).group(1))
    assert median < 8  # 2° noise per Euler angle, registered onto the truth's frame
    res = float(re.search(r"0\.5 at ([\d.]+) Å", text).group(1))
    assert 8.0 <= res <= 20.0  # the same blobs at 4 Å/px: near Nyquist (8 Å)
    for caption in ("viewing directions", "in-plane angle psi", "central slices", "Snapshots", "Fourier shell"):
        assert caption.lower() in text.lower(), caption


def test_view_cxc_opens_the_map_at_a_two_percent_level(report):
    script = (report.parent / "view.cxc").read_text()
    assert 'open "volume.mrc"' in script and "\nview\n" in script
    level = float(re.search(r"level ([-\d.e+]+)", script.split("open", 1)[1]).group(1))
    from cryoai.io.mrc import read_map

    vol, _ = read_map(report.parent / "volume.mrc")
    assert np.mean(vol > level) == pytest.approx(0.02, abs=0.002)
    assert contour_level(vol) == pytest.approx(level, rel=1e-5)


def test_report_of_a_run_in_progress(tmp_path):
    out = make_run(tmp_path, final=False)
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "in progress" in page and "step_001000.mrc" in page
    assert 'open "volumes/step_001000.mrc"' in (out / "view.cxc").read_text()
    assert main(["report", str(out), "--truth", str(tmp_path / "missing.mrc")]) == 2


def test_not_a_run_folder_is_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nothing" in err and "not a cryoai run folder" in err


CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_report_renders_in_headless_chromium(report, tmp_path):
    url = report.resolve().as_uri()
    dom = _chromium(["--dump-dom", url], tmp_path / "profile1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-images-ok="true"' in dom.stdout, dom.stdout[:500]
    shot = tmp_path / "report.png"
    result = _chromium([f"--screenshot={shot}", "--window-size=1200,3000", "--hide-scrollbars", url],
                       tmp_path / "profile2")
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("L"), dtype=np.float32)
    assert pixels.shape == (3000, 1200)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.02  # text and figures, not a blank page


def write_verdict(out: Path, warn: bool) -> None:
    """OUT/verdict.json as the final check writes it (train/final_check.py), passing or warning."""
    from cryoai.eval import diagnostics as dg

    checks = [dg.half_map_resolution(14.0 if warn else 2.6, TRAIN_BOX), dg.view_coverage(random_rotations(500, np.random.default_rng(1)))]
    curve = np.linspace(1, 0, TRAIN_BOX // 2 + 1)
    verdict = {"verdict": dg.overall(checks), "label": "halves share one refinement: optimistic, not gold standard",
               "gold_standard": False, "resolution_A": 14.0 * 2 * APIX if warn else 2.6 * 2 * APIX,
               "resolution_px": 14.0 if warn else 2.6, "box": TRAIN_BOX, "apix": 2 * APIX, "fsc": curve.tolist(),
               "anisotropic_fsc": (curve / 2).tolist(), "diagnostics": [c.to_dict() for c in checks],
               "warnings": [f"{c.name}: {c.explanation}" for c in checks if c.verdict == dg.WARN]}
    (out / "verdict.json").write_text(json.dumps(verdict))


@pytest.mark.parametrize("warn", [True, False])
def test_the_verdict_opens_the_report_and_finished_never_stands_alone(tmp_path, warn):
    out = make_run(tmp_path)
    write_verdict(out, warn)
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    box = page.index('class="verdict')
    assert box < page.index('class="lead"')  # above everything else
    text = re.sub(r"<[^>]+>", " ", page)
    assert "Checks without ground truth" in text and "half-map resolution" in text and "optimistic" in text
    assert page.count('alt="half-map FSC"') == 1
    status = re.search(r"<th>status</th><td>([^<]*)</td>", page).group(1)
    if warn:
        assert 'class="verdict warn"' in page and "WARNING: this run may have failed" in page
        assert "coarser than" in page[box:page.index('class="lead"')]  # the warning's sentence is in the box
        assert "WARNING" in status
    else:
        assert 'class="verdict pass"' in page and "WARNING" not in page
        assert "checks without ground truth pass" in status


def test_a_finished_run_without_a_verdict_says_so(report):
    page = report.read_text()
    assert 'class="verdict none"' in page
    assert "no final check" in re.search(r"<th>status</th><td>([^<]*)</td>", page).group(1)
