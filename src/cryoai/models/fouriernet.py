"""FourierNet (cryoAI): the volume as an implicit function of 3D frequency.

V̂(k) = exp(a(k)) · (p₁(k) + i p₂(k)) with a and p two SIRENs: the exponentiated one spans the
orders of magnitude of a cryo-EM spectrum, the other carries sign and phase. Queries at
kx < 0 read −k and conjugate (Hermitian symmetry, a real map).
"""

from __future__ import annotations

import torch
from torch import nn

from cryoai.models.siren import Siren
from cryoai.models.voxel import hermitian_query


class FourierNet(nn.Module):
    """Implicit Fourier-space volume; coordinates in cycles/pixel (Nyquist 0.5)."""

    def __init__(self, box: int, hidden: int = 128, layers: int = 3, omega0: float = 30.0):
        super().__init__()
        self.box, self.oversample = box, 1
        self.log_amplitude = Siren(3, 1, hidden, layers, omega0)
        self.phase = Siren(3, 2, hidden, layers, omega0)

    @torch.no_grad()
    def load_spectrum(self, spectrum: torch.Tensor, steps: int = 300, lr: float = 1e-3) -> None:
        """Fit the network to a full centred (D, D, D) spectrum (e.g. a back-projection)."""
        size = spectrum.shape[-1]
        f = (torch.arange(size) - size // 2) / size
        kz, ky, kx = torch.meshgrid(f, f, f[size // 2 :], indexing="ij")
        coords = torch.stack([kx, ky, kz], -1).reshape(-1, 3)
        target = spectrum[..., size // 2 :].reshape(-1)
        keep = (coords**2).sum(-1) <= 0.25
        coords, target = coords[keep], target[keep]
        optimiser = torch.optim.Adam(self.parameters(), lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                pick = torch.randint(len(coords), (8192,))
                pred = self(coords[pick])
                loss = (pred - target[pick]).abs().pow(2).mean() / target.abs().pow(2).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        coords, flip = hermitian_query(coords)
        x = coords * 2.0  # cycles/pixel → [−1, 1]
        p = self.phase(x)
        value = torch.exp(self.log_amplitude(x)[..., 0]) * torch.complex(p[..., 0], p[..., 1])
        return torch.where(flip, value.conj(), value)
