"""Figures for the run report, drawn with matplotlib (Agg); every function returns PNG bytes.

Maps are (z, y, x) arrays. Images are shown with the origin at the lower left, so the
horizontal axis is the first named axis (x in "xy") and the vertical the second.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 100


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def training_curves(minutes, loss, band_A=None, rot_minutes=None, rot_median_deg=None,
                    frac_within_10=None) -> bytes:
    """Loss (log scale), the resolution of the loss band (Å) and, when known, the median pose
    error against the ground truth, all against wall-clock minutes."""
    panels = 1 + (band_A is not None) + (rot_median_deg is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.3), squeeze=False)
    axes = list(axes[0])
    ax = axes.pop(0)
    ax.plot(minutes, loss, color="C0", lw=1.2)
    ax.set_yscale("log")
    ax.set(xlabel="wall time (min)", ylabel="loss", title="training loss")
    if band_A is not None:
        ax = axes.pop(0)
        ax.plot(minutes, band_A, color="C2", lw=1.2)
        ax.invert_yaxis()  # finer detail upwards
        ax.set(xlabel="wall time (min)", ylabel="Å", title="finest detail in the loss")
    if rot_median_deg is not None:
        ax = axes.pop(0)
        ax.plot(rot_minutes, rot_median_deg, "o-", color="C3", lw=1.2, ms=3, label="median error (°)")
        ax.set(xlabel="wall time (min)", ylabel="degrees", title="pose error vs ground truth")
        ax.set_ylim(bottom=0)
        if frac_within_10 is not None:
            twin = ax.twinx()
            twin.plot(rot_minutes, 100 * np.asarray(frac_within_10, float), "s--", color="C1", lw=1, ms=3)
            twin.set_ylabel("% within 10°", color="C1")
            twin.set_ylim(0, 100)
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _views(vol: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Central slices and projections, each (title, 2D image with rows = vertical axis)."""
    c = vol.shape[0] // 2
    return [("slice xy", vol[c]), ("slice xz", vol[:, c, :]), ("slice yz", vol[:, :, c]),
            ("projection along z", vol.sum(0)), ("projection along y", vol.sum(1)),
            ("projection along x", vol.sum(2))]


def _show(ax, image: np.ndarray, title: str | None = None) -> None:
    lo, hi = np.percentile(image, [1, 99.5])
    ax.imshow(image, cmap="gray", origin="lower", vmin=lo, vmax=hi if hi > lo else lo + 1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def map_views(vol: np.ndarray, title: str = "") -> bytes:
    """Central slices (xy, xz, yz; top row) and projections along z, y, x (bottom row)."""
    fig, axes = plt.subplots(2, 3, figsize=(8, 5.6))
    for ax, (name, image) in zip(axes.ravel(), _views(vol)):
        _show(ax, image, name)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def snapshot_gallery(snapshots: list[tuple[str, np.ndarray]]) -> bytes:
    """One row per snapshot (label, map): the three central slices and three projections."""
    n = len(snapshots)
    fig, axes = plt.subplots(n, 6, figsize=(10, 1.75 * n + 0.4), squeeze=False)
    for row, (label, vol) in enumerate(snapshots):
        for col, (name, image) in enumerate(_views(vol)):
            _show(axes[row, col], image, name if row == 0 else None)
        axes[row, 0].set_ylabel(label, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def view_directions(rotations: np.ndarray) -> bytes:
    """Equal-area (Mollweide) map of particle viewing directions (third row of each pose A):
    longitude = rot, latitude = 90° − tilt; bins of equal solid angle, so colour ∝ density."""
    d = np.asarray(rotations)[:, 2, :]
    lon = np.arctan2(d[:, 1], d[:, 0])
    z = np.clip(d[:, 2], -1, 1)
    lon_edges = np.linspace(-np.pi, np.pi, 37)
    z_edges = np.linspace(-1, 1, 19)  # uniform in cos(tilt) = equal solid angle
    counts, _, _ = np.histogram2d(lon, z, bins=[lon_edges, z_edges])
    fig = plt.figure(figsize=(7, 3.9))
    ax = fig.add_subplot(111, projection="mollweide")
    mesh = ax.pcolormesh(lon_edges, np.arcsin(z_edges), counts.T, cmap="viridis", shading="flat")
    ax.grid(True, color="white", alpha=0.4, lw=0.5)
    ax.tick_params(axis="x", colors="white", labelsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("viewing directions (longitude = rot, latitude = 90° − tilt)", fontsize=9)
    fig.colorbar(mesh, ax=ax, orientation="horizontal", fraction=0.05, pad=0.08, label="particles per bin")
    fig.tight_layout()
    return _png(fig)


def pose_histograms(psi_deg: np.ndarray, origin_x_A: np.ndarray | None, origin_y_A: np.ndarray | None) -> bytes:
    """Histograms of the in-plane angle psi and of the origins rlnOriginX/YAngst."""
    origins = origin_x_A is not None and origin_y_A is not None
    fig, axes = plt.subplots(1, 3 if origins else 1, figsize=(11 if origins else 4, 3), squeeze=False)
    axes = axes[0]
    axes[0].hist(np.asarray(psi_deg), bins=np.linspace(-180, 180, 37), color="C0")
    axes[0].set(xlabel="psi (°)", ylabel="particles", title="in-plane angle")
    if origins:
        for ax, values, name in ((axes[1], origin_x_A, "X"), (axes[2], origin_y_A, "Y")):
            ax.hist(np.asarray(values), bins=40, color="C4")
            ax.set(xlabel=f"rlnOrigin{name}Angst (Å)", ylabel="particles", title=f"shift {name}")
    fig.tight_layout()
    return _png(fig)


def pose_error_histograms(errors_deg: np.ndarray, trans_errors_A: np.ndarray | None = None) -> bytes:
    """Histogram of the rotation error (after registration) and, if known, the shift error."""
    both = trans_errors_A is not None
    fig, axes = plt.subplots(1, 2 if both else 1, figsize=(9 if both else 4.8, 3.2), squeeze=False)
    axes = axes[0]
    e = np.asarray(errors_deg)
    top = 180.0 if np.percentile(e, 95) > 30 else 30.0  # zoom in when nearly all poses are right
    axes[0].hist(np.minimum(e, top), bins=np.linspace(0, top, 61), color="C3")
    axes[0].axvline(np.median(e), color="k", lw=1, ls="--", label=f"median {np.median(e):.1f}°")
    axes[0].set(xlabel="rotation error (°)" + (" (last bin: ≥ 30°)" if top < 180 else ""), ylabel="particles",
                title="rotation error vs ground truth")
    axes[0].legend(fontsize=8)
    if both:
        t = np.asarray(trans_errors_A)
        axes[1].hist(t, bins=40, color="C1")
        axes[1].axvline(np.median(t), color="k", lw=1, ls="--", label=f"median {np.median(t):.2f} Å")
        axes[1].set(xlabel="shift error (Å)", ylabel="particles", title="shift error vs ground truth")
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def half_map_fsc(freqs, curve, anisotropic, title: str) -> bytes:
    """The half-map FSC and the FSC of the half maps without their spherical averages against
    spatial frequency (axis linear in 1/Å, labelled in Å), lines at 0.5 and 0.143."""
    freqs = np.asarray(freqs)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(freqs, curve, color="C0", lw=3.5, alpha=0.5, label="half maps")  # wide: visible under red
    ax.plot(freqs, anisotropic, color="C3", lw=1.2, label="half maps minus their spherical averages")
    for t, style in ((0.5, "--"), (0.143, ":")):
        ax.axhline(t, color="grey", ls=style, lw=1)
    ticks = np.linspace(0, freqs[-1], 6)[1:]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{1 / f:.1f}" for f in ticks])
    ax.set_xlim(0, freqs[-1])
    ax.set_ylim(min(-0.1, float(np.min(anisotropic)) - 0.02), 1.05)
    ax.set(xlabel="resolution (Å); axis linear in 1/Å", ylabel="Fourier shell correlation")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return _png(fig)
