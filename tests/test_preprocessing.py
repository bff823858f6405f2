import awkward as ak
import numpy as np
import pytest
from conftest import make_jets

from omnijet_lib.data.jets import check_jets
from omnijet_lib.data.preprocessing import (
    PreprocessingConfig,
    constituents_from_features,
    phi_rel,
    preprocess,
    scale_features,
    unscale_features,
)
from omnijet_lib.errors import BadDataError
from omnijet_lib.observables import wrap_phi


def test_scaling_round_trips():
    rng = np.random.default_rng(1)
    pt, eta, phi = rng.exponential(30, 1000) + 0.1, rng.uniform(-0.8, 0.8, 1000), rng.uniform(-0.8, 0.8, 1000)
    back = unscale_features(*scale_features(pt, eta, phi))
    for original, restored in zip((pt, eta, phi), back):
        np.testing.assert_allclose(restored, original, rtol=1e-12)
    log_pt, s_eta, _ = scale_features(np.array([np.e**2]), np.array([0.1]), np.array([0.0]))
    assert log_pt[0] == pytest.approx(2 - 1.8) and s_eta[0] == pytest.approx(0.3)


def test_phi_rel_wraps_across_pi():
    assert phi_rel(np.array([-3.1]), np.array([3.1]))[0] == pytest.approx(2 * np.pi - 6.2)
    wrapped = wrap_phi(np.linspace(-20, 20, 1001))
    assert wrapped.min() > -np.pi and wrapped.max() <= np.pi


def test_preprocess_inverse_returns_the_kept_constituents():
    # Jets near phi = +-pi, some with more than 128 constituents, many outside the cone.
    counts = [5, 200, 40, 1, 129, 60]
    jets = make_jets(counts, jet_phi=[3.1, -3.1, 0.0, 1.0, 3.14, -2.0], spread=0.5)
    config = PreprocessingConfig()
    pre = preprocess(jets, config)
    assert pre.features.shape == (len(counts), 128, 3) and pre.mask.shape == (len(counts), 128)

    restored = constituents_from_features(pre.features, pre.mask, pre.jet_eta, pre.jet_phi, config)
    for i in range(len(jets)):
        c = jets.constituents[i]
        deta = np.asarray(c.eta) - jets.eta[i]
        dphi = phi_rel(np.asarray(c.phi), jets.phi[i])
        inside = (np.abs(deta) < 0.8) & (np.abs(dphi) < 0.8)
        expected = {f: np.asarray(c[f])[inside][:128] for f in ("pt", "eta", "phi")}  # already pT-ordered
        assert pre.mask[i].sum() == len(expected["pt"])
        assert pre.n_dropped[i] == counts[i] - len(expected["pt"])
        np.testing.assert_allclose(np.asarray(restored[i].pt), expected["pt"], rtol=1e-5)
        np.testing.assert_allclose(np.asarray(restored[i].eta), expected["eta"], atol=1e-5)
        np.testing.assert_allclose(wrap_phi(np.asarray(restored[i].phi) - expected["phi"]), 0, atol=1e-5)
    # pT ordering and padding
    for features, mask in zip(pre.features, pre.mask):
        assert np.all(np.diff(features[mask, 0]) <= 0)
    assert np.all(pre.features[~pre.mask] == 0)


def test_inverse_refuses_a_mask_with_holes():
    features = np.zeros((1, 4, 3))
    with pytest.raises(ValueError, match="leading block"):
        constituents_from_features(features, np.array([[True, False, True, False]]), [0.0], [0.0])


def test_nan_and_empty_jets_are_refused():
    jets = make_jets([3, 4])
    broken = ak.to_list(jets.constituents)
    broken[1][2]["eta"] = float("nan")
    nan_jets = type(jets)(jets.pt, jets.eta, jets.phi, jets.mass, jets.label, ak.Array(broken))
    with pytest.raises(BadDataError, match="NaN.*eta.*jet 1.*unit test"):
        check_jets(nan_jets, source="unit test")
    empty = type(jets)(
        jets.pt, jets.eta, jets.phi, jets.mass, jets.label, ak.Array([ak.to_list(jets.constituents)[0], []])
    )
    with pytest.raises(BadDataError, match="without constituents.*jet 1"):
        check_jets(empty, source="unit test")
    with pytest.raises(BadDataError, match="pT must be > 0"):
        scale_features(np.array([0.0]), np.array([0.0]), np.array([0.0]))


def test_preprocessed_jets_select_every_field_alike(pythia_jets):
    pre = preprocess(pythia_jets["top"][:20])
    pick = np.array([3, 0, 17])
    part = pre[pick]
    for name in ("features", "mask", "jet_eta", "jet_phi", "n_dropped"):
        np.testing.assert_array_equal(getattr(part, name), getattr(pre, name)[pick])
    assert len(pre[2]) == 1 and len(pre[pre.mask.sum(1) > 1000]) == 0
