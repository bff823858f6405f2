"""The JetNet metrics (W1m, W1p, FPD, KPD) against closed forms, direct sums and real Pythia jets."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
from scipy.linalg import sqrtm

from omnijet_lib.errors import BadDataError
from omnijet_lib.metrics.generation_quality import (
    FPD_KPD_FEATURES,
    fpd_kpd_features,
    frechet_physics_distance,
    jetnet_metrics,
    kernel_physics_distance,
    polynomial_mmd2,
    wasserstein_with_error,
)


def closed_form_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), the matrix root by scipy.linalg.sqrtm."""
    root = sqrtm(sigma1 @ sigma2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 2 * np.real(root)))


@pytest.fixture(scope="module")
def gaussians():
    """Two correlated 3-D Gaussians, their true moments and 50,000 draws of each (and a second draw of the first)."""
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    sigma1, sigma2 = a @ a.T + np.eye(3), b @ b.T + 0.5 * np.eye(3)
    mu1, mu2 = np.zeros(3), np.array([0.5, -0.3, 0.2])
    draw = lambda mu, sigma: rng.multivariate_normal(mu, sigma, 50_000)
    return {
        "moments": (mu1, sigma1, mu2, sigma2),
        "x": draw(mu1, sigma1),
        "y": draw(mu2, sigma2),
        "x_again": draw(mu1, sigma1),
    }


# --- FPD -------------------------------------------------------------------------------------------


def test_fpd_of_two_gaussians_is_their_closed_form_frechet_distance(gaussians):
    x, y = gaussians["x"], gaussians["y"]
    value, error = frechet_physics_distance(x, y, normalise=False)
    true = closed_form_frechet(*gaussians["moments"])
    # Extrapolated to N -> infinity, FPD is the distance of Gaussians with the two samples' own moments ...
    empirical = closed_form_frechet(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert 0 < error < 0.02 * value
    assert value == pytest.approx(empirical, abs=4 * error)
    # ... which, for 50,000 draws, are the true ones to a few percent: no finite-N bias is left.
    assert value == pytest.approx(true, rel=0.05)
    naive = closed_form_frechet(
        x[:500].mean(0), np.cov(x[:500], rowvar=False), y[:500].mean(0), np.cov(y[:500], rowvar=False)
    )
    assert abs(naive - true) > abs(value - true)  # sanity: a small sample alone would be biased


def test_fpd_of_one_distribution_is_zero_within_errors(gaussians):
    x, x_again, y = gaussians["x"][:20_000], gaussians["x_again"][:20_000], gaussians["y"][:20_000]
    # One sample against itself: 0 up to a trace of curvature in 1/N (~7e-5; the normalised features are O(0.1)).
    assert frechet_physics_distance(x, x)[0] < 2e-4
    two_samples = frechet_physics_distance(x, x_again)
    # Two finite samples differ: their own moments differ by O(1/sqrt(N)), so FPD is O(d/N), not exactly 0.
    assert two_samples[0] < 1e-3
    assert frechet_physics_distance(x, y)[0] > 100 * two_samples[0]


def test_fpd_normalisation_makes_it_independent_of_units(gaussians):
    x, y = gaussians["x"][:2000], gaussians["y"][:2000]
    units = np.array([1000.0, 1.0, 0.01])  # e.g. MeV, a ratio, a small angle
    plain = frechet_physics_distance(x, y, seed=3)
    rescaled = frechet_physics_distance(x * units, y * units, seed=3)
    assert rescaled == pytest.approx(plain, rel=1e-6)


def test_fpd_adapts_its_batch_sizes_to_small_samples(gaussians):
    x, y = gaussians["x"][:400], gaussians["y"][:400]
    # jetnet's 20,000..50,000 become 160..400; the limit is then the distance of the 400 jets' own moments.
    value, error = frechet_physics_distance(x, y, normalise=False)
    empirical = closed_form_frechet(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert 0 < error < 0.1 * value
    assert value == pytest.approx(empirical, abs=4 * error)
    assert value == pytest.approx(closed_form_frechet(*gaussians["moments"]), rel=0.3)  # 400 draws: their moments


# --- KPD -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("degree", [3, 4])
@pytest.mark.parametrize("d", [1, 3])
def test_polynomial_mmd2_is_the_unbiased_estimator_summed_term_by_term(degree, d):
    rng = np.random.default_rng(d)
    x, y = rng.normal(size=(40, d)), rng.normal(0.3, 1.2, size=(30, d))

    def k(a, b):
        return (a @ b / d + 1) ** degree

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    direct = xx + yy - 2 * xy
    given = (x[:, 0], y[:, 0]) if d == 1 else (x, y)  # 1-D input is one feature
    assert polynomial_mmd2(*given, degree=degree) == pytest.approx(direct, rel=1e-10)


@pytest.mark.parametrize(("degree", "expected"), [(3, 79.0), (4, 479.0)])
def test_kpd_of_two_point_masses_is_computable_by_hand(degree, expected):
    # Every draw of 1s against 2s gives k(1,1) + k(2,2) - 2 k(1,2) = 2^p + 5^p - 2 * 3^p:
    # 8 + 125 - 54 = 79 (cubic), 16 + 625 - 162 = 479 (quartic); no spread between batches.
    value, error = kernel_physics_distance(np.ones(50), np.full(50, 2.0), degree=degree)
    assert value == pytest.approx(expected, rel=1e-12)
    assert error == pytest.approx(0.0, abs=1e-9)


def test_kpd_is_zero_for_one_distribution_and_positive_for_a_shifted_one(gaussians):
    x, x_again = gaussians["x"][:20_000], gaussians["x_again"][:20_000]
    same, same_error = kernel_physics_distance(x, x_again, batch_size=1000)
    assert abs(same) <= 3 * same_error
    shift = [x[:, 0].std(), 0.0, 0.0]  # one standard deviation in one feature
    shifted, shifted_error = kernel_physics_distance(x, x_again + shift, batch_size=1000)
    assert shifted > 5 * shifted_error and shifted > 20 * abs(same)


# --- W1 --------------------------------------------------------------------------------------------


def test_w1_of_a_shifted_sample_is_the_shift():
    c = 0.7
    point_mass = np.zeros(100)
    assert wasserstein_with_error(point_mass, point_mass + c) == pytest.approx((c, 0.0))
    sample = np.random.default_rng(0).exponential(2.0, 20_000)
    value, error = wasserstein_with_error(sample, sample + c)
    # Each batch resamples both, so W1 = c up to the resampling noise that the error measures.
    assert 0 < error < 0.05
    assert value == pytest.approx(c, abs=3 * error + 0.02)
    assert wasserstein_with_error(sample, sample + c) == (value, error)  # seeded


# --- All of them on real jets ----------------------------------------------------------------------


def scale_pt(constituents: ak.Array, factor: float) -> ak.Array:
    return ak.with_field(constituents, constituents["pt"] * factor, "pt")


def test_jetnet_metrics_of_real_jets_are_small_and_grow_when_pt_is_scaled(pythia_jets):
    top = pythia_jets["top"].constituents
    first, second = top[:150], top[150:]
    same = jetnet_metrics(first, second)
    scaled = jetnet_metrics(first, scale_pt(second, 1.2))

    assert json.loads(json.dumps(same)) == same  # plain floats and ints all through
    assert set(same) == {"w1m", "w1p", "fpd", "kpd", "n_jets"}
    assert set(same["w1p"]) == {"pt", "eta_rel", "phi_rel", "mean"}
    assert same["n_jets"] == {"real": 150, "generated": 150, "real_fpd_kpd": 150, "generated_fpd_kpd": 150}

    # Two halves of one Pythia sample: the jet masses differ by a few GeV, and the FPD is small.
    assert same["w1m"]["value"] < 15.0
    assert same["fpd"]["value"] < 0.02
    # 20 % more pT is 20 % more mass (~35 GeV for top jets): clearly seen by W1m, W1p(pT), FPD and KPD.
    for metric in ("w1m", "fpd", "kpd"):
        gap = scaled[metric]["value"] - same[metric]["value"]
        assert gap > 3 * np.hypot(scaled[metric]["error"], same[metric]["error"]), metric
    assert scaled["w1m"]["value"] > 3 * same["w1m"]["value"]
    assert scaled["fpd"]["value"] > 3 * same["fpd"]["value"]
    assert scaled["w1p"]["pt"]["value"] > 2 * same["w1p"]["pt"]["value"]
    # Scaling every pT leaves each jet's axis, hence eta_rel and phi_rel, as they were (same seed, same draws).
    for angle in ("eta_rel", "phi_rel"):
        assert scaled["w1p"][angle]["value"] == pytest.approx(same["w1p"][angle]["value"], rel=1e-6)


def test_fpd_kpd_features_are_the_jet_observables_of_jets_with_defined_taus(pythia_jets):
    qcd = pythia_jets["qcd"].constituents[:60]
    few = qcd[:, :2]  # two constituents: tau2 = 0, so tau32 is undefined
    features = fpd_kpd_features(ak.concatenate([qcd, few]))
    assert features.shape == (60, len(FPD_KPD_FEATURES))
    assert np.array_equal(features, fpd_kpd_features(qcd))
    assert np.array_equal(features[:, FPD_KPD_FEATURES.index("multiplicity")], ak.to_numpy(ak.num(qcd, axis=1)))


# --- Bad input -------------------------------------------------------------------------------------


def test_too_few_jets_are_refused_by_name(gaussians, pythia_jets):
    x = gaussians["x"]
    with pytest.raises(ValueError, match=r"real_features holds 19 jets; at least 20"):
        frechet_physics_distance(x[:19], x)
    with pytest.raises(ValueError, match=r"generated_features holds 5 jets; at least 20"):
        kernel_physics_distance(x, x[:5])
    with pytest.raises(ValueError, match=r"generated holds 3 values; at least 20"):
        wasserstein_with_error(x[:, 0], x[:3, 0])
    jets = pythia_jets["qcd"].constituents
    with pytest.raises(ValueError, match=r"generated_constituents holds 10 jets; at least 20"):
        jetnet_metrics(jets, jets[:10])


def test_non_finite_values_are_refused_with_their_place(gaussians, pythia_jets):
    x = gaussians["x"][:100].copy()
    x[42, 1] = np.nan
    with pytest.raises(BadDataError, match=r"1 non-finite .* in generated_features, the first at row 42, feature 1"):
        frechet_physics_distance(gaussians["y"], x)
    with pytest.raises(BadDataError, match=r"non-finite .* in real_features"):
        kernel_physics_distance(x, gaussians["y"])
    with pytest.raises(BadDataError, match=r"non-finite .* in real, the first at row 42"):
        wasserstein_with_error(x[:, 1], gaussians["y"][:, 1])
    jets = pythia_jets["qcd"].constituents[:30]
    flat_pt = ak.to_numpy(ak.flatten(jets["pt"])).astype(np.float64)
    flat_pt[ak.sum(ak.num(jets[:7]))] = np.inf  # the first constituent of jet 7
    broken = ak.with_field(jets, ak.unflatten(flat_pt, ak.num(jets)), "pt")
    with pytest.raises(
        BadDataError, match=r"non-finite .* constituent pt values in generated_constituents, first in jet 7"
    ):
        jetnet_metrics(jets, broken)


def test_inconsistent_input_is_refused(gaussians, pythia_jets):
    with pytest.raises(ValueError, match=r"real_features have 3 features per jet but generated_features have 2"):
        frechet_physics_distance(gaussians["x"], gaussians["y"][:, :2])
    with pytest.raises(ValueError, match=r"min_samples < max_samples"):
        frechet_physics_distance(gaussians["x"], gaussians["y"], min_samples=500, max_samples=100)
    jets = pythia_jets["qcd"].constituents[:30]
    with_empty = ak.concatenate([jets, jets[:1, :0]])
    with pytest.raises(BadDataError, match=r"1 jet\(s\) without constituents in real_constituents \(first: jet 30\)"):
        jetnet_metrics(with_empty, jets)
    with pytest.raises(TypeError, match=r"awkward array of constituents"):
        jetnet_metrics(np.zeros((30, 3)), jets)


def test_jet_distributions_compare_like_shower_distributions(pythia_jets, tmp_path):
    """One Distribution type and one Wasserstein for jets and showers: zero for a sample with itself, the shift for a shift."""
    from omnijet_lib.metrics.distributions import wasserstein_distances
    from omnijet_lib.metrics.generation_quality import OBSERVABLES, jet_distributions
    from omnijet_lib.plotting import compare_observable, show_and_save

    constituents = pythia_jets["top"].constituents
    reference = jet_distributions(constituents)
    assert list(reference) == list(OBSERVABLES)
    assert all(d.weights is None and np.isfinite(d.values).all() for d in reference.values())
    same = wasserstein_distances(jet_distributions(constituents), reference)
    assert all(v == 0.0 for v in same.values())
    scaled = ak.with_field(constituents, constituents["pt"] * 1.1, "pt")  # every pT 10 % up: masses too, shapes not
    distances = wasserstein_distances(jet_distributions(scaled), reference)
    assert distances["jet_mass"] == pytest.approx(0.1 * np.mean(reference["jet_mass"].values), rel=1e-6)
    assert distances["multiplicity"] == 0.0 and distances["jet_tau21"] < 1e-6
    path = show_and_save(compare_observable({"real": reference, "scaled": jet_distributions(scaled)}, "jet_mass"), tmp_path, "m")
    assert path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="unknown observable"):
        compare_observable({"real": reference}, "jet_charge")
