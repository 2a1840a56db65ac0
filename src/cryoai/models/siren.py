"""SIREN: a multilayer perceptron with sine activations (Sitzmann et al., 2020)."""

from __future__ import annotations

import math

import torch
from torch import nn


class SineLayer(nn.Module):
    """y = sin(ω₀·(W x + b)) with SIREN's initialisation."""

    def __init__(self, n_in: int, n_out: int, omega0: float, first: bool):
        super().__init__()
        self.omega0 = omega0
        self.linear = nn.Linear(n_in, n_out)
        bound = 1 / n_in if first else math.sqrt(6 / n_in) / omega0
        nn.init.uniform_(self.linear.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega0 * self.linear(x))


class Siren(nn.Module):
    """Coordinates (..., n_in) → values (..., n_out): sine layers then a linear output."""

    def __init__(self, n_in: int, n_out: int, hidden: int = 128, layers: int = 3, omega0: float = 30.0):
        super().__init__()
        blocks = [SineLayer(n_in, hidden, omega0, first=True)]
        blocks += [SineLayer(hidden, hidden, omega0, first=False) for _ in range(layers - 1)]
        self.body = nn.Sequential(*blocks)
        self.out = nn.Linear(hidden, n_out)
        bound = math.sqrt(6 / hidden) / omega0
        nn.init.uniform_(self.out.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))
