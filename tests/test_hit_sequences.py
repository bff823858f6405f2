"""Showers as hit sequences for the direct-token model: both orders, and back to showers."""

import numpy as np
import pytest

from omnijet_lib.data.hit_sequences import hit_sequences, showers_from_hits
from omnijet_lib.data.shower_simulation import simulate_showers
from omnijet_lib.data.showers import Showers
from omnijet_lib.errors import BadDataError


@pytest.fixture(scope="module")
def showers() -> Showers:
    return simulate_showers(24, energy=(10.0, 20.0), seed=4, progress=False)


@pytest.mark.parametrize("order", ["energy", "layer"])
def test_hit_sequences_round_trip_and_order(showers, order):
    hits = hit_sequences(showers, order=order)
    back = showers_from_hits(hits)
    for i in range(len(showers)):
        original = {tuple(h) for h in showers.hits[i][showers.mask[i]].tolist()}
        restored = back.hits[i][back.mask[i]]
        assert len(restored) == len(original)
        np.testing.assert_allclose(np.sort(restored[:, 3]), np.sort(showers.energy[i][showers.mask[i]]), rtol=1e-6)
    real = hits.mask[0]
    if order == "energy":
        assert np.all(np.diff(hits.log_energy[0][real]) <= 0)
    else:
        z, e = hits.voxels[0][real][:, 2], hits.log_energy[0][real]
        assert np.all(np.diff(z) >= 0) and np.all(np.diff(e)[np.diff(z) == 0] <= 0)
    off_grid = Showers(showers.hits + np.float32(0.3) * showers.mask[..., None], showers.incident_energy)
    with pytest.raises(BadDataError, match="whole cell indices"):
        hit_sequences(off_grid)
    with pytest.raises(BadDataError, match="more than max_hits"):
        hit_sequences(showers, max_hits=10)
