"""The parametric detector response: reproducible, never creates particles, and measures what it is told to."""

import numpy as np
import pytest

from omnijet_lib.data.detector_response import (
    DETECTORS,
    PION_MASS,
    DetectorResponseConfig,
    detector_config,
    detector_response,
    ecal_resolution,
    hcal_resolution,
    track_resolution,
)
from omnijet_lib.errors import BadDataError

CMS = DetectorResponseConfig()
MASSES = {211: PION_MASS, 22: 0.0, 130: 0.497611, 2112: 0.939565, 12: 0.0, 11: 0.000511, 13: 0.105658}
CHARGES = {211: 1, -211: -1, 11: -1, -11: 1, 13: -1, -13: 1}


def make_particles(pdg_id, pt, eta, *, seed=0) -> dict[str, np.ndarray]:
    """Particles of given PDG ids, pT and eta (arrays or scalars), random phi, their own masses."""
    pdg_id, pt, eta = np.broadcast_arrays(np.asarray(pdg_id), np.asarray(pt, float), np.asarray(eta, float))
    phi = np.random.default_rng(seed).uniform(-np.pi, np.pi, pt.shape)
    mass = np.array([MASSES[abs(int(i))] for i in np.unique(pdg_id)])[np.unique(np.abs(pdg_id), return_inverse=True)[1]]
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    charge = np.array([CHARGES.get(int(i), 0) for i in pdg_id.ravel()], dtype=float).reshape(pdg_id.shape)
    return {"px": px, "py": py, "pz": pz, "energy": np.sqrt(px**2 + py**2 + pz**2 + mass**2),
            "charge": charge, "pdg_id": pdg_id}  # fmt: skip


def mixed_sample(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pdg = rng.choice([211, -211, 22, 130, 2112, 11, -13, 12], n)
    return make_particles(pdg, rng.exponential(5.0, n) + 0.02, rng.uniform(-3.5, 3.5, n), seed=seed)


def pt_eta_phi(p):
    pt = np.hypot(p["px"], p["py"])
    return pt, np.arcsinh(p["pz"] / pt), np.arctan2(p["py"], p["px"])


def test_same_seed_same_output_other_seed_other_output():
    particles = mixed_sample(20_000)
    a, b, c = (detector_response(particles, config=CMS, rng=np.random.default_rng(s)) for s in (1, 1, 2))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["index"], c["index"]) or not np.array_equal(a["px"], c["px"])
    # the input is left alone
    np.testing.assert_array_equal(particles["px"], mixed_sample(20_000)["px"])


def test_no_particle_is_created_and_each_output_is_its_input_measured():
    particles = mixed_sample(50_000)
    out = detector_response(particles, config=CMS, rng=np.random.default_rng(3))
    index = out["index"]
    assert len(index) <= len(particles["px"]) and all(len(v) == len(index) for v in out.values())
    assert np.all(np.diff(index) > 0) and index.min() >= 0 and index.max() < len(particles["px"])
    true = {k: v[index] for k, v in particles.items()}
    # angles kept exactly, charge kept, classes as particle flow reports them
    (pt, eta, phi), (_, teta, tphi) = pt_eta_phi(out), pt_eta_phi(true)
    np.testing.assert_allclose(eta, teta, atol=1e-9)
    np.testing.assert_allclose(phi, tphi, atol=1e-9)
    np.testing.assert_array_equal(out["charge"], true["charge"])
    charged = true["charge"] != 0
    assert set(np.abs(out["pdg_id"][charged])) <= {211, 11, 13}
    np.testing.assert_array_equal(np.sign(out["pdg_id"][charged & (np.abs(true["pdg_id"]) == 211)]),
                                  true["charge"][charged & (np.abs(true["pdg_id"]) == 211)])  # fmt: skip
    assert np.all(out["pdg_id"][true["pdg_id"] == 22] == 22)
    assert np.all(out["pdg_id"][np.isin(true["pdg_id"], (130, 2112))] == 130)
    assert not np.isin(np.abs(true["pdg_id"]), (12, 14, 16)).any(), "neutrinos are invisible"
    # physical four-vectors: pions carry the pion mass, calorimeter deposits are massless
    mass2 = out["energy"] ** 2 - out["px"] ** 2 - out["py"] ** 2 - out["pz"] ** 2
    np.testing.assert_allclose(np.sqrt(np.maximum(mass2, 0))[np.abs(out["pdg_id"]) == 211], PION_MASS, atol=1e-6)
    np.testing.assert_allclose(mass2[~charged], 0, atol=1e-6 * out["energy"][~charged].max() ** 2)
    assert np.all(out["energy"] > 0) and np.all(np.isfinite(pt))


def test_tracking_efficiency_matches_the_config():
    n = 600_000
    rng = np.random.default_rng(4)
    pt, abs_eta = rng.uniform(0.0, 4.0, n), rng.uniform(0.0, 3.0, n)
    particles = make_particles(rng.choice([211, -211], n), pt, abs_eta * rng.choice([-1, 1], n))
    out = detector_response(particles, config=CMS, rng=np.random.default_rng(5))
    kept = np.zeros(n, dtype=bool)
    kept[out["index"]] = True
    cells = [  # (pT range, |eta| range, configured efficiency)
        ((0.0, 0.1), (0.0, 2.5), 0.0),
        ((0.1, 1.0), (0.0, 1.5), 0.70),
        ((1.0, 4.0), (0.0, 1.5), 0.95),
        ((0.1, 1.0), (1.5, 2.5), 0.60),
        ((1.0, 4.0), (1.5, 2.5), 0.85),
        ((0.0, 4.0), (2.5, 3.0), 0.0),
    ]
    for (lo, hi), (elo, ehi), expected in cells:
        cell = (pt > lo) & (pt <= hi) & (abs_eta > elo) & (abs_eta <= ehi)
        measured = kept[cell].mean()
        error = np.sqrt(max(expected * (1 - expected), 1e-12) / cell.sum())
        assert abs(measured - expected) < 5 * error + 1e-12, (lo, hi, elo, ehi, measured, expected)


def _check_resolution(ratio: np.ndarray, expected_sigma: float, what: str) -> None:
    """Mean 1 and standard deviation ``expected_sigma`` within 5 standard errors."""
    n = len(ratio)
    mean, std = ratio.mean(), ratio.std()
    kurtosis = np.mean((ratio - mean) ** 4) / std**4
    assert abs(mean - 1) < 5 * std / np.sqrt(n), (what, mean)
    assert abs(std - expected_sigma) < 5 * std * np.sqrt((kurtosis - 1) / (4 * n)), (what, std, expected_sigma)


@pytest.mark.parametrize(("pt", "eta"), [(2.0, 0.2), (50.0, 1.0), (400.0, 0.3), (400.0, 2.0)])
def test_track_pt_resolution_matches_the_config(pt, eta):
    n = 200_000
    particles = make_particles(211, np.full(n, pt), eta)
    out = detector_response(particles, config=CMS, rng=np.random.default_rng(6))
    ratio = np.hypot(out["px"], out["py"]) / pt
    expected = float(track_resolution(np.array([pt]), np.array([eta]), CMS)[0])
    a, b = {0.2: (0.010, 1.5e-4), 1.0: (0.015, 2.5e-4), 0.3: (0.010, 1.5e-4), 2.0: (0.025, 5.5e-4)}[eta]
    assert expected == pytest.approx(np.hypot(a, b * pt))  # the Delphes CMS card's numbers
    _check_resolution(ratio, expected, f"track pT {pt} eta {eta}")


@pytest.mark.parametrize(
    ("pdg", "energy"), [(22, 5.0), (22, 20.0), (22, 200.0), (130, 10.0), (130, 50.0), (130, 500.0)]
)
def test_calorimeter_energy_resolution_matches_the_config(pdg, energy):
    n = 200_000
    eta = 0.4
    pt = np.sqrt(energy**2 - MASSES[pdg] ** 2) / np.cosh(eta)
    particles = make_particles(pdg, np.full(n, pt), eta)
    out = detector_response(particles, config=CMS, rng=np.random.default_rng(7))
    assert len(out["index"]) == n, "far above threshold: all measured"
    e = np.array([energy])
    expected = float((ecal_resolution(e, CMS) if pdg == 22 else hcal_resolution(e, CMS))[0])
    s, noise, c = (0.11, 0.40, 0.008) if pdg == 22 else (1.50, 0.0, 0.05)
    assert expected == pytest.approx(np.sqrt(s**2 / energy + (noise / energy) ** 2 + c**2))
    _check_resolution(out["energy"] / energy, expected, f"{pdg} at {energy} GeV")


def test_thresholds_and_acceptance_are_applied():
    particles = mixed_sample(300_000, seed=8)
    out = detector_response(particles, config=CMS, rng=np.random.default_rng(9))
    true = {k: v[out["index"]] for k, v in particles.items()}
    tpt, teta, _ = pt_eta_phi(true)
    kind = np.abs(out["pdg_id"])
    track, photon, neutral = np.isin(kind, (211, 11, 13)), kind == 22, kind == 130
    assert track.any() and photon.any() and neutral.any()
    assert np.all(np.abs(teta[track]) <= 2.5) and np.all(tpt[track] > 0.1)
    assert np.all(np.abs(teta[photon]) <= 3.0) and np.all(out["energy"][photon] > 0.5)
    assert np.all(np.abs(teta[neutral]) <= 3.0) and np.all(out["energy"][neutral] > 1.0)
    # the thresholds act on the measured energy: some photons below 0.5 GeV pass, some above do not
    below = (particles["pdg_id"] == 22) & (particles["energy"] < 0.5) & (np.abs(pt_eta_phi(particles)[1]) < 3)
    assert 0 < np.isin(np.flatnonzero(below), out["index"]).sum() < below.sum()
    # nothing survives outside every acceptance
    assert np.all(np.abs(teta) <= 3.0)
    # another config moves the cuts
    narrow = DetectorResponseConfig(track_abs_eta_max=1.0, ecal_abs_eta_max=1.0, hcal_abs_eta_max=1.0,
                                    ecal_energy_min=2.0, hcal_energy_min=5.0)  # fmt: skip
    out = detector_response(particles, config=narrow, rng=np.random.default_rng(9))
    _, teta, _ = pt_eta_phi({k: v[out["index"]] for k, v in particles.items()})
    assert np.all(np.abs(teta) <= 1.0)
    assert np.all(out["energy"][out["pdg_id"] == 22] > 2.0) and np.all(out["energy"][out["pdg_id"] == 130] > 5.0)


def test_bad_input_gets_a_clear_error():
    good = mixed_sample(100)
    rng = np.random.default_rng(0)
    for field in ("px", "energy", "charge"):
        bad = dict(good, **{field: good[field].copy()})
        bad[field][7] = np.nan
        with pytest.raises(BadDataError, match=f"non-finite .* particle {field} values, first at particle 7"):
            detector_response(bad, config=CMS, rng=rng)
    negative = dict(good, energy=good["energy"].copy())
    negative["energy"][3] = -1.0
    with pytest.raises(BadDataError, match="negative particle energy, first at particle 3"):
        detector_response(negative, config=CMS, rng=rng)
    with pytest.raises(ValueError, match="1-d and of one length"):
        detector_response(dict(good, px=good["px"][:-1]), config=CMS, rng=rng)
    with pytest.raises(ValueError, match="1-d and of one length"):
        detector_response({k: v.reshape(10, 10) for k, v in good.items()}, config=CMS, rng=rng)
    with pytest.raises(KeyError, match="lack pdg_id"):
        detector_response({k: v for k, v in good.items() if k != "pdg_id"}, config=CMS, rng=rng)
    with pytest.raises(BadDataError, match="pdg_id values must be integers"):
        detector_response(dict(good, pdg_id=good["pdg_id"] + 0.5), config=CMS, rng=rng)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        detector_response(good, config=CMS, rng=1)
    with pytest.raises(TypeError, match="DetectorResponseConfig"):
        detector_response(good, config={"name": "cms"}, rng=rng)
    # an empty input is no error: nothing in, nothing out
    empty = detector_response({k: v[:0] for k, v in good.items()}, config=CMS, rng=rng)
    assert all(len(v) == 0 for v in empty.values())


def test_bad_configs_are_refused_and_good_ones_survive_json():
    with pytest.raises(ValueError, match="efficiencies must lie in"):
        DetectorResponseConfig(track_efficiency_high_pt=(1.2, 0.85))
    with pytest.raises(ValueError, match="one value per"):
        DetectorResponseConfig(track_resolution_constant=(0.01, 0.02))
    with pytest.raises(ValueError, match="must not be negative"):
        DetectorResponseConfig(hcal_stochastic=-1.0)
    with pytest.raises(ValueError, match="finite numbers"):
        DetectorResponseConfig(ecal_noise=float("nan"))
    with pytest.raises(ValueError, match="must reach track_abs_eta_max"):
        DetectorResponseConfig(track_abs_eta_max=3.0)
    assert DetectorResponseConfig(**CMS.to_dict()) == CMS
    assert detector_config("cms") is DETECTORS["cms"] and detector_config("none") is None
    with pytest.raises(ValueError, match="unknown detector 'atlas'"):
        detector_config("atlas")


def test_top_and_qcd_chunk_seeds_are_unchanged_and_dijet_has_its_own():
    from omnijet_lib.data.pythia_jets import PROCESS_DETECTORS, chunk_seed, process_detector

    def old_rule(seed, index, chunk):  # the rule before dijet existed
        return int(np.random.SeedSequence([seed, index, chunk]).generate_state(1)[0]) % 900_000_000 + 1

    for chunk in range(3):
        assert chunk_seed(1, "top", chunk) == old_rule(1, 0, chunk)
        assert chunk_seed(1, "qcd", chunk) == old_rule(1, 1, chunk)
        assert chunk_seed(1, "dijet", chunk) not in (old_rule(1, 0, chunk), old_rule(1, 1, chunk))
    assert process_detector("qcd") is None and process_detector("top", "cms") == CMS
    assert (
        process_detector("dijet") == DETECTORS[PROCESS_DETECTORS["dijet"]] and process_detector("dijet", None) is None
    )


def test_the_command_takes_the_process_and_the_detector():
    from omnijet_lib.cli import build_parser

    args = build_parser().parse_args(
        ["generate-jets", "--process", "dijet", "--detector", "cms", "--n", "5", "--seed", "1", "--out", "x.h5"]
    )
    assert (args.process, args.detector) == ("dijet", "cms")
    args = build_parser().parse_args(["generate-jets", "--process", "qcd", "--n", "5", "--seed", "1", "--out", "x.h5"])
    assert args.detector == "default"


@pytest.mark.slow
def test_generate_jet_file_writes_detector_level_dijets(tmp_path):
    from omnijet_lib.data.jet_files import jet_file_info, read_jets
    from omnijet_lib.data.jets import label_index
    from omnijet_lib.data.pythia_jets import generate_jet_file

    out = generate_jet_file("dijet", 60, tmp_path / "dijet.h5", seed=2, chunk_size=60, n_workers=1, progress=False)
    jets, info = read_jets(out), jet_file_info(out)
    assert len(jets) == 60 and info["schema"] == "omnijet-jets" and info["process"] == "dijet"
    assert np.all((jets.pt > 300) & (jets.pt < 1500) & (np.abs(jets.eta) < 2))
    assert np.all(jets.label == label_index("QCD"))
    assert info["selection"]["pt_min"] == 300 and info["selection"]["pt_max"] == 1500
    assert info["detector"] == CMS.to_dict() and "bias2SelectionPow" in info["spectrum"] + str(info["pythia_settings"])
    flat = jets.flat_constituents()
    assert set(np.unique(np.abs(flat["pdg_id"]))) <= {211, 11, 13, 22, 130}, "particle-flow classes only"
    assert np.all(np.abs(flat["eta"]) <= 3.0)
    tracks = np.abs(flat["pdg_id"]) == 211
    assert np.all(np.abs(flat["eta"][tracks]) <= 2.5) and np.all(flat["charge"][tracks] != 0)
    assert info["jets_per_worker_second"] > 0
    # the same command again is a no-op; without the detector into the same file it is refused
    assert generate_jet_file("dijet", 60, out, seed=2, chunk_size=60, n_workers=1, progress=False) == out
    with pytest.raises(FileExistsError, match="differs in detector"):
        generate_jet_file("dijet", 60, out, seed=2, chunk_size=60, detector=None, progress=False)
