import awkward as ak
import matplotlib
import numpy as np
import pytest
from conftest import make_jets

from omnijet_lib.data.preprocessing import constituents_from_features, preprocess
from omnijet_lib.errors import BadDataError
from omnijet_lib.metrics.resolution import (
    GaussianFit,
    constituent_residuals,
    fit_gaussian,
    jet_residuals,
    resolution_table,
)
from omnijet_lib.observables import jet_observables

matplotlib.use("agg")


@pytest.fixture(scope="module")
def jets():
    """Physical constituents as a tokenizer's output comes back: through the pre-processing and its inverse."""
    jets = make_jets(np.random.default_rng(3).integers(1, 40, 200), seed=3, spread=0.3)
    pre = preprocess(jets)
    return pre, constituents_from_features(pre.features, pre.mask, pre.jet_eta, pre.jet_phi)


def test_fit_gaussian_recovers_mu_and_sigma_despite_outliers():
    rng = np.random.default_rng(0)
    residuals = rng.normal(0.5, 2.0, 20_000)
    residuals[:1000] = rng.uniform(-60, 60, 1000)  # 5% rare big misses
    fit = fit_gaussian(residuals)
    assert isinstance(fit, GaussianFit)
    assert fit.sigma == pytest.approx(2.0, rel=0.05)
    assert fit.mu == pytest.approx(0.5, abs=0.1)
    assert fit.rms > 3 * fit.sigma  # the plain moments feel the tails
    assert fit.n == 20_000


def test_fit_gaussian_drops_nan_and_handles_degenerate_and_empty_input():
    fit = fit_gaussian(np.r_[np.full(50, 1.5), np.nan])
    assert (fit.mu, fit.sigma, fit.mean, fit.rms, fit.n) == (1.5, 0.0, 1.5, 0.0, 50)
    with pytest.raises(ValueError, match="no finite residuals"):
        fit_gaussian([])
    with pytest.raises(ValueError, match="no finite residuals"):
        fit_gaussian([np.nan, np.inf])


def test_identical_jets_have_zero_residuals(jets):
    _, constituents = jets
    for residuals in (constituent_residuals(constituents, constituents), jet_residuals(constituents, constituents)):
        for name, values in residuals.items():
            finite = values[np.isfinite(values)]
            assert finite.size > 0, name
            np.testing.assert_array_equal(finite, 0.0, err_msg=name)
    # tau21 is undefined (NaN) only for jets of a single constituent, whose tau1 is 0.
    single = ak.to_numpy(ak.num(constituents, axis=1)) == 1
    assert single.any()
    np.testing.assert_array_equal(np.isnan(jet_residuals(constituents, constituents)["tau21"]), single)


def test_known_pt_shift_gives_expected_residuals(jets):
    pre, constituents = jets
    shifted_features = pre.features.copy()
    shifted_features[..., 0] += np.log(1.1)  # every constituent pT x 1.1, directions unchanged
    shifted = constituents_from_features(shifted_features, pre.mask, pre.jet_eta, pre.jet_phi)
    residuals = constituent_residuals(constituents, shifted)
    pt = ak.to_numpy(ak.flatten(constituents.pt))
    np.testing.assert_allclose(residuals["pt"], 0.1 * pt, rtol=1e-6)
    # A common scale factor moves neither the jet axis nor any direction (up to float32 features).
    np.testing.assert_allclose(residuals["eta_rel"], 0.0, atol=1e-6)
    np.testing.assert_allclose(residuals["phi_rel"], 0.0, atol=1e-6)
    jet = jet_residuals(constituents, shifted)
    original = jet_residuals(constituents, constituents)  # zeros; NaN where a ratio is undefined
    obs = jet_observables(constituents)
    # atol: the "mass" of a one-particle jet is ~1e-7 GeV of rounding, not 0.
    np.testing.assert_allclose(jet["mass"], 0.1 * obs["mass"], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(jet["pt"], 0.1 * obs["pt"], rtol=1e-6)
    # tau ratios are scale invariant.
    np.testing.assert_allclose(jet["tau21"], original["tau21"], atol=1e-6)


def test_rotated_jet_has_zero_relative_residuals_and_given_fields_are_used(jets):
    _, constituents = jets
    turned = ak.zip({"pt": constituents.pt, "eta": constituents.eta, "phi": constituents.phi + 0.3})
    residuals = constituent_residuals(constituents, turned)
    # phi_rel is measured from each jet's own axis, which turns with the jet.  (A shift in eta would
    # not do: it moves the jet's rapidity by as much, but not its pseudorapidity.)
    np.testing.assert_allclose(residuals["phi_rel"], 0.0, atol=1e-9)
    np.testing.assert_allclose(residuals["eta_rel"], 0.0, atol=1e-9)
    # Given eta_rel/phi_rel fields are taken as they are.
    with_rel = ak.with_field(ak.with_field(constituents, constituents.eta, "eta_rel"), constituents.phi, "phi_rel")
    turned_rel = ak.with_field(ak.with_field(turned, turned.eta, "eta_rel"), turned.phi, "phi_rel")
    np.testing.assert_allclose(constituent_residuals(with_rel, turned_rel)["phi_rel"], 0.3, rtol=1e-9)


def test_mismatched_multiplicities_are_refused():
    one = ak.Array([[{"pt": 10.0, "eta": 0.0, "phi": 0.0}] * 3, [{"pt": 5.0, "eta": 0.1, "phi": 0.1}] * 2])
    other = ak.Array([[{"pt": 10.0, "eta": 0.0, "phi": 0.0}] * 3, [{"pt": 5.0, "eta": 0.1, "phi": 0.1}] * 4])
    with pytest.raises(BadDataError, match=r"jet 1: 2 vs 4"):
        constituent_residuals(one, other)
    with pytest.raises(BadDataError, match="2 jets but reconstructed has 1"):
        jet_residuals(one, other[:1])
    with pytest.raises(ValueError, match="lacks constituent fields"):
        constituent_residuals(ak.Array([[{"pt": 1.0}]]), ak.Array([[{"pt": 1.0}]]))


def test_resolution_table_rows():
    rng = np.random.default_rng(1)
    residuals = {
        "binned": {"mass": rng.normal(2, 5, 500), "pt": rng.normal(0, 3, 500)},
        "vqvae": {"mass": rng.normal(0, 1, 500)},
    }
    rows = resolution_table(residuals)
    expected = [("binned", "mass"), ("binned", "pt"), ("vqvae", "mass")]
    assert [(r["tokenizer"], r["observable"]) for r in rows] == expected
    for row in rows:
        assert set(row) == {"tokenizer", "observable", "sigma", "shift", "mean", "rms", "n"}
        assert isinstance(row["sigma"], float) and isinstance(row["n"], int)
    assert rows[0]["sigma"] == pytest.approx(5, rel=0.25) and rows[0]["shift"] == pytest.approx(2, abs=1.0)


def test_overlay_residuals_returns_a_figure():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from omnijet_lib.plotting import overlay_residuals

    rng = np.random.default_rng(2)
    fig = overlay_residuals(
        {"512": rng.normal(5, 10, 400), "8192": np.r_[rng.normal(0, 2, 400), np.nan]},
        xlabel="$m^{reco} - m$ [GeV]",
        range=(-40, 40),
    )
    try:
        assert isinstance(fig, Figure)
        labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert len(labels) == 2 and all("sigma" in label for label in labels)
    finally:
        plt.close(fig)
