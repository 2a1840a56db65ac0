"""The contrast transfer function in RELION's sign convention (``shared/CONVENTIONS.md``).

CTF = −(sqrt(1 − w²)·sin γ − w·cos γ)·exp(−B s²/4), γ = 2π(−½Δf λ s² + ¼ Cs λ³ s⁴) − φ,
so the CTF is +w at s = 0 and positive at low frequency (underfocus Δf > 0).

The parameters travel as a ``CTFParams`` record: one named field per parameter, one value per
particle, NumPy arrays on the data side (``ParticleSet.ctf``) and torch tensors in the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Callable

import numpy as np
import torch


@dataclass(frozen=True)
class CTFParams:
    """CTF parameters of N particles: each field an (N,) NumPy array or torch tensor."""

    defocus_u_A: Any  # Å, positive = underfocus
    defocus_v_A: Any  # Å
    defocus_angle_deg: Any  # astigmatism angle, degrees
    voltage_kV: Any  # acceleration voltage, kV
    cs_mm: Any  # spherical aberration, mm
    amp_contrast: Any  # amplitude contrast, fraction
    phase_shift_deg: Any  # phase-plate shift, degrees
    bfactor_A2: Any  # B-factor, Å²

    @classmethod
    def from_array(cls, values) -> "CTFParams":
        """From an (N, 8) array or tensor whose columns are in ``CTF_COLUMNS`` order."""
        if values.ndim != 2 or values.shape[1] != len(CTF_COLUMNS):
            raise ValueError(f"CTF parameters must be (N, {len(CTF_COLUMNS)}), got {tuple(values.shape)}")
        return cls(*(values[:, j] for j in range(len(CTF_COLUMNS))))

    @classmethod
    def full(cls, n: int, **values: float) -> "CTFParams":
        """N particles sharing the same ``values`` (every field named), float64 NumPy."""
        return cls(**{name: np.full(n, float(values[name])) for name in CTF_COLUMNS})

    def as_array(self):
        """(N, 8) in ``CTF_COLUMNS`` order (NumPy or torch, as the fields)."""
        columns = [getattr(self, name) for name in CTF_COLUMNS]
        return torch.stack(columns, -1) if isinstance(columns[0], torch.Tensor) else np.stack(columns, -1)

    def __len__(self) -> int:
        return len(self.defocus_u_A)

    def __getitem__(self, rows) -> "CTFParams":
        """The particles ``rows`` (an index array, mask or slice)."""
        return self.map(lambda column: column[rows])

    def map(self, fn: Callable[[Any], Any]) -> "CTFParams":
        """A record with ``fn`` applied to every field."""
        return replace(self, **{name: fn(getattr(self, name)) for name in CTF_COLUMNS})

    def to_torch(self, dtype: torch.dtype = torch.float32, device=None) -> "CTFParams":
        """Fields as torch tensors of ``dtype`` on ``device``."""
        def convert(column):
            if isinstance(column, np.ndarray) and not column.flags.writeable:
                column = column.copy()  # torch warns on read-only arrays (memory maps, pandas views)
            return torch.as_tensor(column).to(device=device, dtype=dtype)
        return self.map(convert)

    def numpy(self) -> "CTFParams":
        """Fields as float64 NumPy arrays."""
        return self.map(lambda column: np.asarray(torch.as_tensor(column).cpu(), dtype=np.float64))

    def to(self, device, non_blocking: bool = False) -> "CTFParams":
        """Torch fields moved to ``device``."""
        return self.map(lambda column: column.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "CTFParams":
        """Torch fields in page-locked memory."""
        return self.map(lambda column: column.pin_memory())


CTF_COLUMNS = tuple(f.name for f in fields(CTFParams))  # the field names, in their (N, 8) order


def electron_wavelength_A(voltage_kV: torch.Tensor | float) -> torch.Tensor:
    """Relativistic electron wavelength λ in Å for an acceleration voltage in kV."""
    v = torch.as_tensor(voltage_kV, dtype=torch.float64) * 1e3
    return 12.2643247 / torch.sqrt(v * (1.0 + 0.978466e-6 * v))


def ctf(freqs_A: torch.Tensor, params: CTFParams) -> torch.Tensor:
    """CTF values at spatial frequencies for a batch of B particles.

    freqs_A: (M, 2) or (B, M, 2) frequencies (kx, ky) in 1/Å; params: B particles.
    Returns (B, M) in the dtype of ``freqs_A``, on its device.
    """
    def column(name: str) -> torch.Tensor:
        return torch.as_tensor(getattr(params, name)).to(device=freqs_A.device, dtype=torch.float64)[:, None]

    dfu, dfv, ang = column("defocus_u_A"), column("defocus_v_A"), column("defocus_angle_deg")
    w, phase, bfac = column("amp_contrast"), column("phase_shift_deg"), column("bfactor_A2")
    k = freqs_A.to(torch.float64)
    kx, ky = k[..., 0], k[..., 1]
    s2 = kx**2 + ky**2
    theta = torch.atan2(ky, kx)
    defocus = 0.5 * (dfu + dfv + (dfu - dfv) * torch.cos(2.0 * (theta - torch.deg2rad(ang))))
    lam = electron_wavelength_A(column("voltage_kV").squeeze(1)).unsqueeze(1)
    cs = column("cs_mm") * 1e7
    gamma = 2 * math.pi * (-0.5 * defocus * lam * s2 + 0.25 * cs * lam**3 * s2**2) - torch.deg2rad(phase)
    value = -(torch.sqrt(1.0 - w**2) * torch.sin(gamma) - w * torch.cos(gamma))
    value = value * torch.exp(-bfac * s2 / 4.0)
    return value.to(freqs_A.dtype)
