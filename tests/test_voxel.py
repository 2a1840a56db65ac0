"""VoxelVolume's fused interpolation agrees with sample_grid on the complex grid, Hermitian flip included."""

from __future__ import annotations

import torch

from cryoai.models.voxel import VoxelVolume
from cryoai.physics.slicing import sample_grid


def reference(volume: VoxelVolume, coords: torch.Tensor) -> torch.Tensor:
    """The direct formula: read −k and conjugate for kx < 0; complex grid × scale; sample_grid."""
    flip = coords[..., 0] < 0
    q = torch.where(flip.unsqueeze(-1), -coords, coords)
    grid = torch.complex(volume.values[0].double(), volume.values[1].double()) * volume.scale.double()
    offset = torch.tensor([0.0, volume.size // 2, volume.size // 2], dtype=torch.float64)
    out = sample_grid(grid, q.double() * volume.size + offset)
    return torch.where(flip, out.conj(), out)


def test_voxel_forward_matches_sample_grid_and_gradients_flow():
    torch.manual_seed(0)
    volume = VoxelVolume(8, oversample=2)
    with torch.no_grad():
        volume.values.normal_()
        volume.scale.fill_(2.5)
    coords = (torch.rand(5, 300, 3) - 0.5) * 1.3  # both half spaces, some points outside the grid
    coords[0, :3] = torch.tensor([[0.0, 0.1, -0.2], [-0.25, 0.0, 0.0], [0.7, 0.0, 0.0]])
    got = volume(coords)
    ref = reference(volume, coords)
    assert got.shape == (5, 300) and got.dtype == torch.complex64
    assert (got.to(torch.complex128) - ref).abs().max() < 1e-5 * ref.abs().max()
    assert got[0, 2] == 0  # outside the grid
    assert (got.real != 0).sum() > 500 and (coords[..., 0] < 0).sum() > 500  # not trivially equal
    got.abs().pow(2).sum().backward()
    assert volume.values.grad is not None and volume.values.grad.abs().sum() > 0
