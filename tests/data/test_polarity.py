"""Polarity guess on real and simulated particle sets of known contrast."""

from __future__ import annotations


import pytest

from helpers import SHARED_DATA as DATA
from cryoai.data.particles import load_particles
from cryoai.data.polarity import guess_polarity

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared test data absent")


@needs_data
@pytest.mark.parametrize("name, expected", [
    ("real_aspire_80S_17ptcl/sample_particles_relion30.star", "bright"),  # RELION-extracted
    ("real_empiar10076_7ptcl/empiar_10076_7.star", "dark"),  # README: not inverted
    ("sim_empiar10076_classDE_32/10076_classD_32_clean.star", "bright"),  # projections of a map
])
def test_polarity_guess(name, expected):
    assert guess_polarity(load_particles(DATA / name)) == expected
