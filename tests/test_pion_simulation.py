"""The parameterised pion showers in the AHCAL obey the physics they claim (a thousand showers per energy)."""

import dataclasses

import numpy as np
import pytest
from scipy.optimize import curve_fit

from omnijet_lib.data.geometry import AHCAL, ILD_ECAL, cylindrical_geometry
from omnijet_lib.data.pion_simulation import (
    PionSimulationConfig,
    calibration_factor,
    em_fraction,
    iter_pion_batches,
    pion_dataset,
    simulate_pion_file,
    simulate_pions,
)
from omnijet_lib.data.shower_files import check_cells, read_showers, shower_file_info
from omnijet_lib.data.showers import Showers, check_showers, concatenate_showers
from omnijet_lib.errors import BadDataError
from omnijet_lib.shower_observables import energy_sum, shower_start_layer
from omnijet_lib.workflows import shower_split

ENERGIES = (10.0, 30.0, 50.0, 70.0, 90.0)  # GeV
N_PER_ENERGY = 1000
ELECTRON = PionSimulationConfig(particle="electron")


@pytest.fixture(scope="module")
def scan() -> dict[float, Showers]:
    """1000 pion showers at each fixed energy."""
    return {e: simulate_pions(N_PER_ENERGY, energy=e, seed=int(e), progress=False) for e in ENERGIES}


@pytest.fixture(scope="module")
def electrons() -> Showers:
    return simulate_pions(500, energy=50.0, seed=50, config=ELECTRON, progress=False)


def _hits_per_layer(showers: Showers, *, above_threshold: bool = False) -> np.ndarray:
    """(N, n_layers) number of hits in each layer (all stored hits, or those above threshold)."""
    keep = showers.energy > (showers.threshold if above_threshold else 0.0)
    shower = np.broadcast_to(np.arange(len(showers))[:, None], keep.shape)[keep]
    counts = np.zeros((len(showers), showers.geometry.n_layers), dtype=np.int64)
    np.add.at(counts, (shower, showers.z[keep].astype(int)), 1)
    return counts


def _profile(showers: Showers) -> np.ndarray:
    """Mean visible energy [MeV] per layer, hits above threshold."""
    energy = np.where(showers.energy > showers.threshold, showers.energy, 0.0)
    return np.bincount(showers.z.astype(int).ravel(), energy.ravel(), minlength=showers.geometry.n_layers) / len(
        showers
    )


def _rms_radius_mm(showers: Showers) -> np.ndarray:
    """(N,) energy-weighted rms distance [mm] of the hits above threshold from the shower's centre of gravity."""
    energy = np.where(showers.energy > showers.threshold, showers.energy, 0.0)
    x, y = showers.geometry.transverse_mm(showers.x, showers.y)
    total = energy.sum(axis=1, keepdims=True)
    cx, cy = (energy * x).sum(axis=1, keepdims=True) / total, (energy * y).sum(axis=1, keepdims=True) / total
    return np.sqrt((energy * ((x - cx) ** 2 + (y - cy) ** 2)).sum(axis=1) / total[:, 0])


def test_reproducible_by_seed_and_batch_size():
    a = simulate_pions(300, seed=4, batch_size=100, progress=False)
    b = simulate_pions(300, seed=4, batch_size=100, progress=False)
    np.testing.assert_array_equal(a.hits, b.hits)
    np.testing.assert_array_equal(a.incident_energy, b.incident_energy)
    other = simulate_pions(300, seed=5, batch_size=100, progress=False)
    assert not np.array_equal(a.incident_energy, other.incident_energy)
    assert a.hits.shape != other.hits.shape or not np.array_equal(a.hits, other.hits)
    # the generator's batches, concatenated, are the whole run
    batches = list(iter_pion_batches(300, seed=4, batch_size=100, progress=False))
    assert [len(s) for s in batches] == [100, 100, 100]
    np.testing.assert_array_equal(concatenate_showers(batches).hits, a.hits)
    # fixed energies and per-shower energies
    fixed = simulate_pions(50, energy=20.0, seed=1, progress=False)
    np.testing.assert_array_equal(fixed.incident_energy, 20.0)
    chosen = np.linspace(10, 100, 50)
    per_shower = simulate_pions(50, energy=chosen, seed=1, batch_size=16, progress=False)
    np.testing.assert_allclose(per_shower.incident_energy, chosen, rtol=1e-6)


def test_showers_are_valid_cells_and_round_trip_through_a_file(tmp_path):
    showers = simulate_pions(400, seed=2, progress=False)  # 10-100 GeV
    assert showers.geometry == AHCAL
    assert 10 <= showers.incident_energy.min() and showers.incident_energy.max() <= 100
    check_showers(showers, source="simulated pions")
    check_cells(showers, source="simulated pions")
    energy = showers.energy
    assert np.all(np.diff(energy, axis=1) <= 0)  # most energetic first, padding (0) last
    for axis, size in zip(range(3), AHCAL.shape, strict=True):
        coordinate = showers.hits[..., axis][showers.mask]
        assert coordinate.min() >= 0 and coordinate.max() <= size - 1
        np.testing.assert_array_equal(coordinate, np.round(coordinate))
    # a file: written batch by batch, read back with its geometry and provenance
    path = simulate_pion_file(tmp_path / "pions.h5", 150, energy=(20.0, 60.0), seed=3, batch_size=64, progress=False)
    back = read_showers(path)
    direct = simulate_pions(150, energy=(20.0, 60.0), seed=3, batch_size=64, progress=False)
    assert back.geometry == AHCAL
    width = direct.max_hits
    np.testing.assert_array_equal(back.hits[:, :width], direct.hits)
    assert not back.hits[:, width:].any()
    np.testing.assert_array_equal(back.incident_energy, direct.incident_energy)
    info = shower_file_info(path)
    assert info["n_showers"] == 150 and info["seed"] == 3 and "pion" in info["generator"]


def test_calibrated_response_is_linear(scan):
    factor = calibration_factor()
    assert factor == calibration_factor()  # cached and deterministic
    assert 0.02 < factor < 0.1  # GeV per visible MeV: a few % of the energy is seen in the scintillator
    for energy, showers in scan.items():
        response = energy_sum(showers).mean() * factor / energy
        assert abs(response - 1) < 0.03, (energy, response)


def test_resolution_is_stochastic_plus_constant(scan):
    """σ/E = a/√E ⊕ b for showers starting in the first ten layers (~1.2 λ_I), as CALICE selects them."""
    factor = calibration_factor()
    energies = np.array(ENERGIES)
    resolution = []
    for energy in ENERGIES:
        showers = scan[energy]
        early = energy_sum(showers)[shower_start_layer(showers) < 10] * factor
        assert len(early) > 0.5 * N_PER_ENERGY  # 1 − exp(−1.23/1.21) ≈ 64 %
        resolution.append(early.std() / early.mean())
    resolution = np.array(resolution)
    assert np.all(np.diff(resolution) < 0.01)  # falls with energy (up to statistics)

    def model(e, a, b):
        return np.sqrt(a**2 / e + b**2)

    (a, b), _ = curve_fit(model, energies, resolution, p0=(0.55, 0.03))
    assert 0.45 <= a <= 0.70, (a, b)
    assert 0.0 <= abs(b) <= 0.08, (a, b)  # b enters squared: its sign is arbitrary


def test_longitudinal_profile_and_start_point(scan, electrons):
    pions = scan[50.0]
    pion_profile, electron_profile = _profile(pions), _profile(electrons)
    assert np.argmax(pion_profile) > np.argmax(electron_profile)  # deeper than the em part alone
    layers = np.arange(AHCAL.n_layers)
    depth = [(p * layers).sum() / p.sum() for p in (pion_profile, electron_profile)]
    assert depth[0] > depth[1] + 3  # centre of gravity several layers deeper
    assert pion_profile[-1] > 0.5 * AHCAL.mip_mev  # the tail reaches the back (leakage, punch-through)

    # Start point ~ Exp(λ_π): the pion crosses layer k as a track (one hit) with probability exp(−depth_k / 1.21)
    ratio = PionSimulationConfig().pion_lambda_ratio
    showers = concatenate_showers(list(scan.values()))
    start = shower_start_layer(showers)
    n = len(showers)
    for k in (0, 2, 5, 10, 20):
        expected = np.exp(-AHCAL.layer_depth_lambda[k] / ratio)
        observed = np.mean(start > k)
        sigma = np.sqrt(expected * (1 - expected) / n)
        assert abs(observed - expected) < 4 * sigma + 0.005, (k, observed, expected)
    expected_first = np.exp(-AHCAL.layer_lambda[0] / ratio)
    assert abs(np.mean(start > 0) - expected_first) < 4 * np.sqrt(expected_first * (1 - expected_first) / n)
    # the track in front of the interaction: one MIP-like hit per layer in the entry tile (14 or 15)
    early_layers = _hits_per_layer(showers)[:, :3]
    tracks = np.flatnonzero(start >= 3)
    assert np.all(early_layers[tracks] == 1)
    track_hits = showers.hits[tracks][(showers.z[tracks] < 3) & showers.mask[tracks]]
    assert set(np.unique(track_hits[:, :2])) <= {14.0, 15.0}
    np.testing.assert_allclose(np.median(track_hits[:, 3]), AHCAL.mip_mev, rtol=0.25)
    # punch-through: no interaction in 5.9 λ_I, exp(−5.9/1.21) ≈ 0.8 %
    through = np.mean(start == AHCAL.n_layers)
    assert 0.002 < through < 0.02
    assert np.all(showers.n_hits[start == AHCAL.n_layers] == AHCAL.n_layers)


def test_hits_grow_with_energy_and_pions_are_wider_than_electrons(scan, electrons):
    hits = [(s.energy > s.threshold).sum(axis=1).mean() for s in scan.values()]
    assert np.all(np.diff(hits) > 0), hits
    assert 80 < hits[0] and hits[-1] < 1500  # a few hundred hits above threshold
    width_pion, width_electron = _rms_radius_mm(scan[50.0]).mean(), _rms_radius_mm(electrons).mean()
    assert width_pion > 1.5 * width_electron, (width_pion, width_electron)
    # mean em fraction from Groom's formula; e/π > 1 (non-compensation)
    np.testing.assert_allclose(em_fraction(np.array([1.0, 100.0])), [0.01, 1 - 100**-0.18], rtol=1e-6)
    e_over_pi = energy_sum(electrons).mean() / energy_sum(scan[50.0]).mean()
    assert 1.05 < e_over_pi < 1.35, e_over_pi


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"n": 0}, "n must be an integer >= 1"),
        ({"n": -3}, "n must be an integer >= 1"),
        ({"n": 2.5}, "n must be an integer >= 1"),
        ({"energy": 0.0}, "energy must be"),
        ({"energy": -10.0}, "energy must be"),
        ({"energy": float("nan")}, "energy must be"),
        ({"energy": (50.0, 10.0)}, "low <= high"),
        ({"energy": (0.0, 10.0)}, "energy must be"),
        ({"energy": np.array([10.0, 20.0])}, "array of 2 energies for n = 4"),
        ({"energy": "ten"}, "energy must be"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"geometry": cylindrical_geometry("cyl", n_alpha=16, radial_edges_mm=[0, 5, 10], n_layers=5)}, "Cartesian"),
        ({"config": PionSimulationConfig(particle="kaon")}, "particle must be"),
    ],
)
def test_bad_input_is_a_clear_error(arguments, message):
    arguments = {"n": 4} | arguments
    n = arguments.pop("n")
    with pytest.raises(ValueError, match=message):
        simulate_pions(n, progress=False, **arguments)
    with pytest.raises(ValueError, match=message):
        next(iter_pion_batches(n, progress=False, **arguments))


def test_geometry_without_material_constants_is_refused():
    lead = dataclasses.replace(ILD_ECAL.absorber, name="lead")
    with pytest.raises(ValueError, match="no critical_energy_mev for material 'lead'"):
        simulate_pions(4, geometry=dataclasses.replace(AHCAL, absorber=lead), progress=False)
    with pytest.raises(ValueError, match="Cartesian"):
        calibration_factor(cylindrical_geometry("cyl", n_alpha=16, radial_edges_mm=[0, 5, 10], n_layers=5))


def test_pion_dataset_is_simulated_once_and_split_like_the_photons(tmp_path):
    path = pion_dataset(30, seed=2, energy=(10, 20), data_dir=tmp_path, progress=False)
    assert path.name == "pions_10-20GeV_30_seed2.h5"
    stamp = path.stat().st_mtime_ns
    assert pion_dataset(30, seed=2, energy=(10, 20), data_dir=tmp_path, progress=False) == path
    assert path.stat().st_mtime_ns == stamp  # reused, not simulated again
    copy = tmp_path / "copy" / "pions_10-20GeV_31_seed2.h5"  # a file under a name that promises another count
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    with pytest.raises(BadDataError, match="holds 30 showers, not 31"):
        pion_dataset(31, seed=2, energy=(10, 20), data_dir=copy.parent, progress=False)
    electrons = pion_dataset(10, seed=2, energy=50.0, particle="electron", data_dir=tmp_path, progress=False)
    assert electrons.name == "electrons_50GeV_10_seed2.h5"
    split = shower_split(n_showers=30, seed=2, energy=[10, 20], data_dir=tmp_path, particle="pion")
    assert split.file == path and split.showers.geometry == AHCAL
    assert sorted(np.concatenate([split.train_idx, split.val_idx, split.test_idx])) == list(range(30))
    with pytest.raises(ValueError, match="particle must be 'photon'"):
        shower_split(n_showers=30, seed=2, energy=[10, 20], data_dir=tmp_path, particle="kaon")
