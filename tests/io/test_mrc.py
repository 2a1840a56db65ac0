"""io/mrc.py: maps read back indexed (z, y, x) whatever the header's axis order; voxel size kept."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest

from cryoai.errors import InputError
from cryoai.io.mrc import read_map, write_map


def test_write_then_read_keeps_array_and_voxel_size(tmp_path):
    vol = np.random.default_rng(0).standard_normal((6, 6, 6)).astype(np.float32)
    write_map(tmp_path / "m.mrc", vol, 1.7)
    back, apix = read_map(tmp_path / "m.mrc")
    np.testing.assert_array_equal(back, vol)
    assert apix == pytest.approx(1.7) and back.flags.writeable and back.flags.c_contiguous


@pytest.mark.parametrize("mapc, mapr, maps", [(3, 1, 2), (2, 3, 1), (1, 3, 2), (3, 2, 1)])
def test_permuted_axes_are_read_as_z_y_x(tmp_path, mapc, mapr, maps):
    """A map stored with x, y, z along other file axes (as some CCP4 programs write) is the same map."""
    vol = np.random.default_rng(1).standard_normal((5, 5, 5)).astype(np.float32)  # (z, y, x)
    file_axes = (maps, mapr, mapc)  # the map axis (1 = x, 2 = y, 3 = z) along file axes 0, 1, 2
    stored = vol.transpose([{3: 0, 2: 1, 1: 2}[a] for a in file_axes])  # stored[s, r, c]
    with mrcfile.new(tmp_path / "p.mrc") as m:
        m.set_data(np.ascontiguousarray(stored))
        m.header.mapc, m.header.mapr, m.header.maps = mapc, mapr, maps
    back, _ = read_map(tmp_path / "p.mrc")
    np.testing.assert_array_equal(back, vol)


def test_invalid_axis_order_is_refused(tmp_path):
    with mrcfile.new(tmp_path / "bad.mrc") as m:
        m.set_data(np.zeros((4, 4, 4), np.float32))
        m.header.mapc, m.header.mapr, m.header.maps = 1, 1, 3
    with pytest.raises(InputError, match="axis order"):
        read_map(tmp_path / "bad.mrc")
