import numpy as np
import pytest

from omnijet_lib.data.showers import Showers
from omnijet_lib.shower_observables import (
    SHOWER_OBSERVABLES,
    cell_energies,
    centre_of_gravity,
    energy_sum,
    longitudinal_profile,
    n_hits,
    radial_profile,
    shower_observables,
)


@pytest.fixture
def showers() -> Showers:
    """Shower 0: two hits and a noise cell; shower 1: only noise; shower 2: one hit and padding with junk coordinates."""
    hits = np.zeros((3, 4, 4), dtype=np.float32)
    hits[0, 0] = [10, 12, 3, 1.0]
    hits[0, 2] = [14, 12, 5, 3.0]
    hits[0, 3] = [0, 0, 0, 0.05]  # below the 0.1 MeV threshold: noise
    hits[1, 0] = [7, 7, 7, 0.08]
    hits[2, 1] = [29, 0, 29, 2.0]
    hits[2, 2] = [5, 5, 5, 0.0]  # padding: coordinates without energy count for nothing
    return Showers(hits, np.array([20.0, 30.0, 40.0], dtype=np.float32))


def test_sums_counts_and_spectrum(showers):
    np.testing.assert_allclose(cell_energies(showers), [1.0, 3.0, 0.05, 0.08, 2.0], rtol=1e-6)
    np.testing.assert_allclose(energy_sum(showers), [4.0, 0.0, 2.0])
    assert n_hits(showers).tolist() == [2, 0, 1]
    assert n_hits(showers, threshold=0.0).tolist() == [3, 1, 1]
    np.testing.assert_allclose(energy_sum(showers, threshold=0.0), [4.05, 0.08, 2.0], rtol=1e-6)


def test_centre_of_gravity_and_profiles(showers):
    cog = centre_of_gravity(showers)
    np.testing.assert_allclose(cog["x"][[0, 2]], [13.0, 29.0])  # (10 * 1 + 14 * 3) / 4
    np.testing.assert_allclose(cog["y"][[0, 2]], [12.0, 0.0])
    np.testing.assert_allclose(cog["z"][[0, 2]], [4.5, 29.0])  # (3 * 1 + 5 * 3) / 4
    assert np.isnan([cog[a][1] for a in "xyz"]).all()  # no hit above threshold: undefined

    profile = longitudinal_profile(showers)
    assert profile.shape == (3, 30)
    expected = np.zeros((3, 30))
    expected[0, 3], expected[0, 5], expected[2, 29] = 1.0, 3.0, 2.0
    np.testing.assert_allclose(profile, expected)

    radial = radial_profile(showers, bins=[0, 1, 2, 3, 4])
    np.testing.assert_allclose(radial, [[0, 3, 0, 1], [0, 0, 0, 0], [2, 0, 0, 0]])  # axis at x = 13: r = 1 and 3
    assert radial_profile(showers).shape == (3, 42)
    np.testing.assert_allclose(radial_profile(showers).sum(axis=1), energy_sum(showers))  # default bins hold all
    np.testing.assert_allclose(radial_profile(showers, bins=[0, 2, 3]), [[3, 1], [0, 0], [2, 0]])  # r = 3: last edge
    with pytest.raises(ValueError, match="increasing edges"):
        radial_profile(showers, bins=[2, 1])


def test_observables_for_comparisons(showers):
    observables = shower_observables(showers)
    assert list(observables) == ["energy_sum", "n_hits", "cog_x", "cog_y", "cog_z"]
    assert set(observables) <= set(SHOWER_OBSERVABLES)
    assert all(values.shape == (3,) for values in observables.values())
    np.testing.assert_allclose(observables["cog_z"], [4.5, np.nan, 29.0])
    assert observables["n_hits"].tolist() == [2, 0, 1]
