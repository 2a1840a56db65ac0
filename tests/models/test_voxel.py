"""VoxelVolume: its fused interpolation agrees with sample_grid on the complex grid (Hermitian flip
and Hermitian kx = 0 plane included), and the map it holds is real."""

from __future__ import annotations

import torch

from cryoai.geometry.grids import fft3_centered
from cryoai.models.voxel import VoxelVolume
from cryoai.physics.slicing import sample_grid


def hermitian_grid(volume: VoxelVolume) -> torch.Tensor:
    """The stored complex grid × scale with its kx = 0 plane replaced, voxel by voxel, by
    (V(0, ky, kz) + conj V(0, −ky, −kz)) / 2 (index i ↔ (D − i) mod D along y and z)."""
    grid = torch.complex(volume.values[0].double(), volume.values[1].double()) * volume.scale.double()
    D, plane = volume.size, grid[..., 0].clone()
    for z in range(D):
        for y in range(D):
            grid[z, y, 0] = (plane[z, y] + plane[(D - z) % D, (D - y) % D].conj()) / 2
    return grid


def reference(volume: VoxelVolume, coords: torch.Tensor) -> torch.Tensor:
    """The direct formula: read −k and conjugate for kx < 0; the Hermitian grid; sample_grid."""
    flip = coords[..., 0] < 0
    q = torch.where(flip.unsqueeze(-1), -coords, coords)
    offset = torch.tensor([0.0, volume.size // 2, volume.size // 2], dtype=torch.float64)
    out = sample_grid(hermitian_grid(volume), q.double() * volume.size + offset)
    return torch.where(flip, out.conj(), out)


def random_volume(box: int = 8, seed: int = 0) -> VoxelVolume:
    torch.manual_seed(seed)
    volume = VoxelVolume(box, oversample=2)
    with torch.no_grad():
        volume.values.normal_()
        volume.scale.fill_(2.5)
    return volume


def test_voxel_forward_matches_sample_grid_and_gradients_flow():
    volume = random_volume()
    coords = (torch.rand(5, 300, 3) - 0.5) * 1.3  # both half spaces, some points outside the grid
    coords[0, :3] = torch.tensor([[0.0, 0.1, -0.2], [-0.25, 0.0, 0.0], [0.7, 0.0, 0.0]])
    coords[1, :100, 0] = 0.0  # on the kx = 0 plane
    got = volume(coords)
    ref = reference(volume, coords)
    assert got.shape == (5, 300) and got.dtype == torch.complex64
    assert (got.to(torch.complex128) - ref).abs().max() < 1e-5 * ref.abs().max()
    assert got[0, 2] == 0  # outside the grid
    assert (got.real != 0).sum() > 500 and (coords[..., 0] < 0).sum() > 500  # not trivially equal
    got.abs().pow(2).sum().backward()
    assert volume.values.grad is not None and volume.values.grad.abs().sum() > 0


def test_kx0_plane_is_hermitian():
    """V(−k) = conj V(k) on the kx = 0 plane, between grid points too."""
    volume = random_volume(seed=1)
    k = torch.zeros(400, 3)
    k[:, 1:] = (torch.rand(400, 2) - 0.5) * 0.85  # within index 1 … D − 1 (the −D/2 Nyquist plane has no partner)
    plus, minus = volume(k), volume(-k)
    assert plus.imag.abs().mean() > 0.1 * plus.abs().mean()  # complex values: not trivially Hermitian
    assert (plus - minus.conj()).abs().max() < 1e-5 * plus.abs().max()


def test_map_of_any_grid_is_real():
    """The full centred spectrum the model gives has a real inverse transform (its imaginary part
    ~0), whatever the stored values; the ±D/2 Nyquist planes, which have no partner, are zeroed."""
    volume = random_volume(seed=2)
    with torch.no_grad():
        volume.values[:, 0], volume.values[:, :, 0], volume.values[..., -1] = 0, 0, 0
    D = volume.size
    f = (torch.arange(D) - D // 2) / D
    kz, ky, kx = torch.meshgrid(f, f, f, indexing="ij")
    spectrum = volume(torch.stack([kx, ky, kz], -1).reshape(-1, 3)).reshape(D, D, D).to(torch.complex128)
    dims = (-3, -2, -1)
    complex_map = torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(spectrum, dim=dims), dim=dims), dim=dims)
    assert complex_map.imag.abs().max() < 1e-6 * complex_map.real.abs().max()


def test_a_loaded_real_map_is_unchanged():
    """A real map's spectrum is Hermitian already: the constraint leaves its values, and what the
    model returns, as they were (the raw grid read directly)."""
    torch.manual_seed(3)
    box, D = 8, 16
    real = torch.zeros(D, D, D)
    real[box // 2 : box // 2 + box, box // 2 : box // 2 + box, box // 2 : box // 2 + box] = torch.randn(box, box, box)
    volume = VoxelVolume(box, oversample=2)
    volume.load_spectrum(fft3_centered(real))
    volume.requires_grad_(False)
    assert torch.allclose(volume.hermitian_values(), volume.values, atol=1e-6 * volume.values.abs().max().item())
    coords = (torch.rand(2000, 3) - 0.5) * 0.9
    coords[:500, 0] = 0.0
    flip = coords[..., 0] < 0
    raw = torch.complex(volume.values[0].double(), volume.values[1].double()) * volume.scale.double()
    offset = torch.tensor([0.0, D // 2, D // 2], dtype=torch.float64)
    direct = sample_grid(raw, torch.where(flip.unsqueeze(-1), -coords, coords).double() * D + offset)
    direct = torch.where(flip, direct.conj(), direct)
    assert (volume(coords).to(torch.complex128) - direct).abs().max() < 1e-5 * direct.abs().max()
