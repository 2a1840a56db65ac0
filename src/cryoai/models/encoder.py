"""The pose encoder: image → Gaussian low-pass filter bank → VGG-like CNN → rotation and shift.

The rotation head predicts 6 numbers (two vectors on S²×S²) that Gram–Schmidt (roma) turns
into a rotation matrix; the shift head predicts the RELION origin in pixels of the input.
"""

from __future__ import annotations

import roma
import torch
from torch import nn

from cryoai.geometry.grids import fft2_centered, freq_grid_2d, ifft2_centered


class GaussianFilterBank(nn.Module):
    """Stacks an image with Gaussian low-passed copies of itself as input channels.

    sigmas_px: real-space widths in pixels of the input (0 keeps the image as it is).
    """

    def __init__(self, box: int, sigmas_px: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)):
        super().__init__()
        k2 = (freq_grid_2d(box) ** 2).sum(-1)  # cycles/px squared
        gains = torch.stack([torch.exp(-2 * torch.pi**2 * s**2 * k2) for s in sigmas_px])
        self.register_buffer("gains", gains)  # (C, L, L) Fourier transfer functions

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        spectra = fft2_centered(images).unsqueeze(1)  # (B, 1, L, L)
        return ifft2_centered(spectra * self.gains)  # (B, C, L, L)


class PoseEncoder(nn.Module):
    """CNN predicting RELION rotation matrices A (B, 3, 3) and origins (B, 2) in input pixels."""

    def __init__(self, box: int, widths: tuple[int, ...] = (16, 32, 64, 64), hidden: int = 256,
                 sigmas_px: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0), max_shift_px: float | None = None):
        super().__init__()
        self.box = box
        self.filters = GaussianFilterBank(box, sigmas_px)
        layers: list[nn.Module] = []
        channels, size = len(sigmas_px), box
        for width in widths:  # one 3×3 conv + BatchNorm + ReLU + 2× pooling per stage
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels, size = width, size // 2
        self.cnn = nn.Sequential(*layers)
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, hidden), nn.ReLU(inplace=True))
        self.rotation_head = nn.Linear(hidden, 6)
        self.shift_head = nn.Linear(hidden, 2)
        nn.init.zeros_(self.shift_head.weight)
        nn.init.zeros_(self.shift_head.bias)
        self.max_shift_px = max_shift_px if max_shift_px is not None else box / 8
        self.bf16 = False  # the CNN under bfloat16 autocast (mixed precision); the heads stay float32

    def features(self, filtered: torch.Tensor) -> torch.Tensor:
        """The CNN and dense trunk on filter-bank channels (B, C, L, L): (B, hidden) float32.
        Real-valued throughout, so this is the part ``torch.compile`` can compile."""
        with torch.autocast(filtered.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.trunk(self.cnn(filtered)).float()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(self.filters(images))
        six = self.rotation_head(features).reshape(-1, 3, 2)
        rotations = roma.special_gramschmidt(six)
        origins = self.max_shift_px * torch.tanh(self.shift_head(features))
        return rotations, origins
