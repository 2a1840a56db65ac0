"""The contrast transfer function in RELION's sign convention (``shared/CONVENTIONS.md``).

CTF = −(sqrt(1 − w²)·sin γ − w·cos γ)·exp(−B s²/4), γ = 2π(−½Δf λ s² + ¼ Cs λ³ s⁴) − φ,
so the CTF is +w at s = 0 and positive at low frequency (underfocus Δf > 0).
"""

from __future__ import annotations

import math

import torch

# Columns of a CTF parameter array, one row per particle (as cryoai.data.particles.CTF_COLUMNS).
CTF_COLUMNS = ("defocus_u_A", "defocus_v_A", "defocus_angle_deg", "voltage_kV", "cs_mm", "amp_contrast", "phase_shift_deg", "bfactor_A2")


def electron_wavelength_A(voltage_kV: torch.Tensor | float) -> torch.Tensor:
    """Relativistic electron wavelength λ in Å for an acceleration voltage in kV."""
    v = torch.as_tensor(voltage_kV, dtype=torch.float64) * 1e3
    return 12.2643247 / torch.sqrt(v * (1.0 + 0.978466e-6 * v))


def ctf(freqs_A: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """CTF values at spatial frequencies for a batch of particles.

    freqs_A: (M, 2) or (B, M, 2) frequencies (kx, ky) in 1/Å.
    params: (B, 8) in ``CTF_COLUMNS`` order (Å, Å, degrees, kV, mm, fraction, degrees, Å²).
    Returns (B, M) in the dtype of ``freqs_A``.
    """
    p = params.to(torch.float64)
    dfu, dfv, ang, kv, cs_mm, w, phase, bfac = (p[:, i : i + 1] for i in range(8))
    k = freqs_A.to(torch.float64)
    kx, ky = k[..., 0], k[..., 1]
    s2 = kx**2 + ky**2
    theta = torch.atan2(ky, kx)
    defocus = 0.5 * (dfu + dfv + (dfu - dfv) * torch.cos(2.0 * (theta - torch.deg2rad(ang))))
    lam = electron_wavelength_A(kv.squeeze(1)).unsqueeze(1)
    cs = cs_mm * 1e7
    gamma = 2 * math.pi * (-0.5 * defocus * lam * s2 + 0.25 * cs * lam**3 * s2**2) - torch.deg2rad(phase)
    value = -(torch.sqrt(1.0 - w**2) * torch.sin(gamma) - w * torch.cos(gamma))
    value = value * torch.exp(-bfac * s2 / 4.0)
    return value.to(freqs_A.dtype)
