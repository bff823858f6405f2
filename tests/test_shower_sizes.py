"""Per-shower quantities drawn from log-normals fitted in the incident energy."""

import numpy as np
import pytest

from omnijet_lib.errors import BadDataError
from omnijet_lib.models.shower_sizes import HitCountModel, LogNormalInEnergy


def test_a_fitted_log_normal_recovers_a_known_one():
    rng = np.random.default_rng(0)
    energy = rng.uniform(10, 100, 20_000)
    x = np.log(energy / 30.0)
    n = np.exp(rng.normal(6.0 + 0.8 * x - 0.1 * x**2, 0.1 + 0.05 * x))
    fit = HitCountModel.fit(energy, n)
    mean, width = fit.mean_and_width([10.0, 50.0, 90.0])
    x = np.log(np.array([10.0, 50.0, 90.0]) / 30.0)
    np.testing.assert_allclose(mean, 6.0 + 0.8 * x - 0.1 * x**2, atol=0.01)
    np.testing.assert_allclose(width, 0.1 + 0.05 * x, atol=0.01)
    drawn = fit.sample(np.full(5000, 50.0), max_hits=1700, rng=np.random.default_rng(1))
    assert drawn.dtype == np.int64 and drawn.min() >= 1 and drawn.max() <= 1700
    assert abs(np.log(drawn).mean() - mean[1]) < 0.01
    with pytest.raises(BadDataError, match="more than"):
        HitCountModel.fit([10.0, 20.0], [100, 200])
    with pytest.raises(BadDataError, match="value > 0"):
        LogNormalInEnergy.fit(energy, np.where(np.arange(len(energy)) == 3, 0.0, n))
