"""Shower-quality metrics: distributions, Wasserstein distances, token resolution, 3-D drawing."""

import numpy as np
import pytest

from omnijet_lib.data.shower_preprocessing import ShowerPreprocessingConfig, preprocess_showers, scale_hits
from omnijet_lib.data.shower_simulation import simulate_showers
from omnijet_lib.data.showers import Showers
from omnijet_lib.metrics.distributions import wasserstein_distances
from omnijet_lib.metrics.shower_quality import hit_residuals, shower_distributions
from omnijet_lib.shower_observables import SHOWER_OBSERVABLES, energy_sum, longitudinal_profile, radial_profile


@pytest.fixture(scope="module")
def showers() -> Showers:
    return simulate_showers(60, seed=21, progress=False)


def test_distributions_hold_every_observable_and_profiles_are_mean_energies(showers):
    d = shower_distributions(showers)
    assert list(d) == list(SHOWER_OBSERVABLES)
    assert len(d["cell_energy"].values) == showers.mask.sum() and d["cell_energy"].weights is None
    assert len(d["energy_sum"].values) == len(showers)
    # a profile's weights sum to the mean visible energy; binned, they are the mean profile
    for name in ("longitudinal_profile", "radial_profile"):
        np.testing.assert_allclose(d[name].weights.sum(), energy_sum(showers).mean(), rtol=1e-9)
    layers, _ = np.histogram(
        d["longitudinal_profile"].values, np.arange(31) - 0.5, weights=d["longitudinal_profile"].weights
    )
    np.testing.assert_allclose(layers, longitudinal_profile(showers).mean(axis=0), rtol=1e-9)
    radii, _ = np.histogram(d["radial_profile"].values, np.arange(43.0), weights=d["radial_profile"].weights)
    np.testing.assert_allclose(radii, radial_profile(showers).mean(axis=0), rtol=1e-9, atol=1e-12)


def test_wasserstein_is_zero_for_the_same_showers_and_sees_a_shift(showers):
    reference = shower_distributions(showers)
    same = wasserstein_distances(shower_distributions(showers), reference)
    assert set(same) == set(SHOWER_OBSERVABLES) and all(v == pytest.approx(0.0, abs=1e-9) for v in same.values())

    hits = showers.hits.copy()
    hits[..., 2] = np.where(showers.mask, np.minimum(hits[..., 2] + 2, 29), 0)  # every hit two layers deeper
    hits[..., 3] = np.where(hits[..., 3] > 0.1, 1.5 * hits[..., 3], hits[..., 3])  # 50% more energy above threshold
    shifted = wasserstein_distances(shower_distributions(Showers(hits, showers.incident_energy)), reference)
    assert 1.5 < shifted["cog_z"] <= 2.0 + 1e-9  # less where the last layer caps the shift
    assert 1.5 < shifted["longitudinal_profile"] <= 2.0 + 1e-9
    np.testing.assert_allclose(shifted["energy_sum"], 0.5 * energy_sum(showers).mean(), rtol=1e-6)
    assert shifted["cog_x"] == pytest.approx(0.0, abs=1e-6) and shifted["n_hits"] == pytest.approx(0.0)

    with pytest.raises(ValueError, match="same observables"):
        wasserstein_distances({"energy_sum": reference["energy_sum"]}, reference)


def test_hit_residuals_in_physical_units(showers):
    config = ShowerPreprocessingConfig()
    features, mask = preprocess_showers(showers[:5], config)
    perfect = hit_residuals(features, features, mask, config)
    assert set(perfect) == {"x", "y", "z", "energy"}
    assert all(np.abs(v).max() < 1e-9 for v in perfect.values())
    assert len(perfect["x"]) == mask.sum()

    moved = features.copy()
    moved[mask] = scale_hits(showers[:5].hits[mask] + np.array([1.0, -2.0, 3.0, 0.0]), config)  # cells, layers
    moved[..., 3][mask] += np.log(1.1)  # energy x 1.1
    r = hit_residuals(features, moved, mask, config)
    for name, shift in {"x": 1.0, "y": -2.0, "z": 3.0, "energy": 0.1}.items():
        np.testing.assert_allclose(r[name], shift, atol=1e-5)
    with pytest.raises(ValueError, match="must match"):
        hit_residuals(features, moved[:, :10], mask, config)


def test_shower_figures(showers, tmp_path):
    from omnijet_lib.plotting import compare_observable, draw_shower, show_and_save

    samples = {"simulated": shower_distributions(showers[:30]), "other": shower_distributions(showers[30:])}
    for name in SHOWER_OBSERVABLES:
        path = show_and_save(compare_observable(samples, name, reference="simulated"), tmp_path, name)
        assert path.stat().st_size > 10_000
    ax = draw_shower(showers, 0)
    assert len(ax.collections[0].get_offsets()) == (showers.energy[0] > 0.1).sum()
    show_and_save(ax.figure, tmp_path, "shower")
