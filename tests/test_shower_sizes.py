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


def test_empirical_residuals_keep_a_long_low_tail_and_its_mean():
    """A pion's visible energy: a Gaussian core and a long low tail (late starts, punch-through).  A log-normal
    through it misplaces the mean; the training showers' own residuals keep mean, tail and quantiles."""
    rng = np.random.default_rng(2)
    energy = rng.uniform(10, 100, 20_000)

    def visible(e, rng):
        core = e * 21.0 * np.exp(rng.normal(0.0, 0.15, len(e)))
        late = rng.random(len(e)) < 0.15  # a shower starting deep leaks a uniform share of its energy
        return np.where(late, core * rng.uniform(0.05, 1.0, len(e)), core)

    values = visible(energy, rng)
    log_normal = LogNormalInEnergy.fit(energy, values)
    empirical = LogNormalInEnergy.fit(energy, values, residuals="empirical")
    assert log_normal.residual_quantiles == () and len(empirical.residual_quantiles) == 101
    assert LogNormalInEnergy.from_tensor(empirical.as_tensor()) == empirical  # as a model stores it
    assert LogNormalInEnergy.from_tensor(log_normal.as_tensor()) == log_normal
    log_normal_misses = []
    for e in (10.0, 50.0, 90.0):
        truth = visible(np.full(50_000, e), rng)
        drawn = empirical.sample(np.full(50_000, e), rng=rng)
        assert abs(drawn.mean() / truth.mean() - 1) < 0.01, e
        np.testing.assert_allclose(np.quantile(drawn, [0.5, 0.95]), np.quantile(truth, [0.5, 0.95]), rtol=0.03)
        # the tail: one shape of residuals for all energies (a location-scale fit), so only roughly at the ends
        np.testing.assert_allclose(np.quantile(drawn, 0.05), np.quantile(truth, 0.05), rtol=0.08)
        log_normal_misses.append(abs(log_normal.sample(np.full(50_000, e), rng=rng).mean() / truth.mean() - 1))
    assert max(log_normal_misses) > 0.02  # why the option exists
    # standardised and at are inverse to each other (the two sizes' copula goes through them)
    z = np.linspace(-2.5, 2.5, 11)
    np.testing.assert_allclose(empirical.standardised(50.0, empirical.at(50.0, z)), z, atol=1e-6)
    with pytest.raises(ValueError, match="residuals must be one of"):
        LogNormalInEnergy.fit(energy, values, residuals="kde")
