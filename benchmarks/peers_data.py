"""The data sets of benchmarks/peers.py: a cryoai-simulated particle set with its truth, and the
first N particles of it written as every peer reads them (MRC stack, RELION STAR, cryoDRGN pickles)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from cryoai.geometry.rotations import euler_to_matrix
from cryoai.io.star import read_star


@dataclass
class Dataset:
    """A cryoai-simulated particle set with its truth."""
    folder: Path
    name: str
    box: int
    apix: float
    n: int

    @property
    def truth(self) -> Path:
        return self.folder / "truth.mrc"


def load_dataset(folder: Path) -> Dataset:
    """Read box, pixel size and count from `folder/particles.star` (RELION 3.1, one optics group)."""
    star = read_star(folder / "particles.star")
    optics = star["optics"].iloc[0]
    name = folder.parent.name if folder.name == "data" else folder.name
    return Dataset(folder, name, int(optics["rlnImageSize"]), float(optics["rlnImagePixelSize"]), len(star["particles"]))


def make_subset(ds: Dataset, n: int, out: Path) -> Path:
    """The first `n` particles as every peer reads them: particles.mrcs (float32), particles.star
    (RELION 3.1, renumbered), ctf.pkl and pose.pkl (cryoDRGN's pickles; /work/shared/data/README.md).

    ctf.pkl: (n, 9) float32 [D, Apix, dfU Å, dfV Å, dfang deg, kV, Cs mm, w, phase deg];
    pose.pkl: (R, t) with R the RELION matrix A (CONVENTIONS.md) and t = origin in px / D.
    The true poses are written only for checks (backprojection with known poses): no method
    below reads them.
    """
    out.mkdir(parents=True, exist_ok=True)
    if (out / "pose.pkl").is_file():
        return out
    star = read_star(ds.folder / "particles.star")
    optics, parts = star["optics"].iloc[0], star["particles"].iloc[:n].copy()
    # the simulator writes one stack in order: index i@particles.mrcs is row i
    idx = parts["rlnImageName"].str.split("@").str[0].astype(int).to_numpy() - 1
    with mrcfile.mmap(ds.folder / "particles.mrcs", permissive=True) as m:
        images = np.asarray(m.data[idx], dtype=np.float32)
    with mrcfile.new(out / "particles.mrcs", overwrite=True) as m:
        m.set_data(images)
        m.voxel_size = ds.apix
    parts["rlnImageName"] = [f"{i + 1:06d}@particles.mrcs" for i in range(n)]
    text = ["data_optics", "", "loop_"] + [f"_{c} #{i}" for i, c in enumerate(star["optics"].columns, 1)]
    text += ["\t".join(str(v) for v in star["optics"].iloc[0].to_list()), "", "", "data_particles", "", "loop_"]
    text += [f"_{c} #{i}" for i, c in enumerate(parts.columns, 1)]
    text += parts.to_csv(sep="\t", header=False, index=False, float_format="%.6f").splitlines()
    (out / "particles.star").write_text("\n".join(text) + "\n")

    D = ds.box
    phase = parts["rlnPhaseShift"].to_numpy() if "rlnPhaseShift" in parts else np.zeros(n)
    ctf = np.stack([np.full(n, D), np.full(n, ds.apix), parts["rlnDefocusU"], parts["rlnDefocusV"],
                    parts["rlnDefocusAngle"], np.full(n, optics["rlnVoltage"]),
                    np.full(n, optics["rlnSphericalAberration"]), np.full(n, optics["rlnAmplitudeContrast"]),
                    phase], axis=1).astype(np.float32)
    rot = euler_to_matrix(parts["rlnAngleRot"].to_numpy(), parts["rlnAngleTilt"].to_numpy(),
                          parts["rlnAnglePsi"].to_numpy()).astype(np.float32)
    trans = np.stack([parts["rlnOriginXAngst"], parts["rlnOriginYAngst"]], axis=1) / ds.apix / D
    with open(out / "ctf.pkl", "wb") as f:
        pickle.dump(ctf, f)
    with open(out / "pose.pkl", "wb") as f:
        pickle.dump((rot, trans.astype(np.float32)), f)
    return out
