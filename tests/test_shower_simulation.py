"""The parameterised photon showers obey the physics they claim (a few hundred showers per check)."""

import numpy as np
import pytest

from omnijet_lib.data.shower_simulation import SimulationConfig, layer_media, simulate_showers
from omnijet_lib.data.showers import (
    ABSORBER_MM,
    GRID_SIZE,
    HIT_THRESHOLD_MEV,
    N_LAYERS,
    SILICON_MM,
    Showers,
    check_showers,
)

ENERGIES = (10.0, 30.0, 60.0, 100.0)  # GeV
W_X0_MM, SI_X0_MM, W_CRITICAL_MEV = 3.5, 93.7, 8.0
SILICON_DEPTH_X0 = np.cumsum(ABSORBER_MM / W_X0_MM + SILICON_MM / SI_X0_MM)  # (30,) depth of each layer's silicon


@pytest.fixture(scope="module")
def scan() -> dict[float, Showers]:
    """300 showers at each fixed energy."""
    return {e: simulate_showers(300, energy=e, seed=int(e), progress=False) for e in ENERGIES}


def _above(showers):
    return np.where(showers.energy > HIT_THRESHOLD_MEV, showers.energy, 0.0)  # (N, max_hits) MeV


def _calibrated_sum_gev(showers) -> np.ndarray:
    """Energy sum with each layer weighted by 1/sampling fraction (CALICE-style): an estimate of E."""
    fraction = layer_media().sampling_fraction[showers.z.astype(int)]
    return (_above(showers) / fraction).sum(axis=1) / 1e3


def test_energy_sum_is_linear_and_its_resolution_stochastic(scan):
    energies = np.array(ENERGIES)
    sums = [_calibrated_sum_gev(scan[e]) for e in ENERGIES]
    mean = np.array([s.mean() for s in sums])
    slope = (energies * mean).sum() / (energies**2).sum()  # linear fit through the origin
    np.testing.assert_allclose(mean, slope * energies, rtol=0.03)
    assert 0.9 < slope < 1.02  # leakage only loses energy

    resolution = np.array([s.std() / s.mean() for s in sums])
    assert np.all(np.diff(resolution) < 0)
    # (σ/E)² = a²/E + b²: least squares in a², b²
    (a2, b2), *_ = np.linalg.lstsq(np.stack([1 / energies, np.ones_like(energies)], axis=1), resolution**2)
    assert 0.08 < np.sqrt(a2) < 0.25  # CALICE Si-W: 16.5 %
    assert b2 < 0.04**2
    assert resolution[0] / resolution[-1] > 1.8  # 1/√E alone: 3.2; a constant term makes it less

    # The raw visible sum (no layer weights): ~2.3 % of E in the silicon, slightly sublinear (the
    # thick layers 21-30 see half the sampling fraction, and deeper showers put more energy there).
    raw = np.array([_above(scan[e]).sum(axis=1).mean() for e in ENERGIES])  # MeV
    raw_slope = (energies * raw).sum() / (energies**2).sum()
    assert 18 < raw_slope < 28  # MeV per GeV: 50 GeV -> ~1.15 GeV visible
    np.testing.assert_allclose(raw, raw_slope * energies, rtol=0.12)
    assert np.all(np.diff(raw / energies) < 0)


def test_shower_maximum_deepens_with_log_energy(scan):
    mean_depth, peak_depth = [], []
    for e in ENERGIES:
        energy = _above(scan[e])
        depth = SILICON_DEPTH_X0[scan[e].z.astype(int)]
        mean_depth.append(((energy * depth).sum(axis=1) / energy.sum(axis=1)).mean())
        profile = np.bincount(scan[e].z.astype(int).ravel(), weights=energy.ravel(), minlength=N_LAYERS)
        peak_depth.append(SILICON_DEPTH_X0[np.argmax(profile)])
    log_e = np.log(ENERGIES)
    slope = np.polyfit(log_e, mean_depth, 1)[0]
    assert 0.5 < slope < 1.3  # X0 per unit of ln E; t_max = ln(E/E_c) + 0.5 has slope 1
    expected = np.log(np.array(ENERGIES) * 1e3 / W_CRITICAL_MEV) + 0.5  # photons (PDG)
    np.testing.assert_allclose(peak_depth, expected, atol=1.5)
    assert np.all(np.diff(peak_depth) >= 0)


def test_hit_counts():
    showers = simulate_showers(400, seed=3, progress=False)  # 10-100 GeV
    n_hits = (showers.energy > HIT_THRESHOLD_MEV).sum(axis=1)
    assert n_hits.min() >= 100 and n_hits.max() <= 1700
    low, high = showers.incident_energy < 20, showers.incident_energy > 90
    assert np.median(n_hits[high]) > 2.5 * np.median(n_hits[low])


def test_cell_energy_spectrum_falls_by_three_orders_of_magnitude():
    """From the MIP peak to the hottest shower cores (tens of MeV at 100 GeV), in log bins of 0.01-100 MeV."""
    showers = simulate_showers(300, seed=4, progress=False)  # 10-100 GeV
    counts, edges = np.histogram(showers.energy[showers.mask], bins=np.logspace(-2, 2, 17))
    peak = np.argmax(counts)
    assert 0.1 <= edges[peak] and edges[peak + 1] <= 0.4  # the MIP peak (MIP = 0.2 MeV)
    assert counts[edges[:-1] < HIT_THRESHOLD_MEV].min() > 0.01 * counts[peak]  # a sub-threshold population
    falling = counts[peak:]
    last = np.flatnonzero(falling)[-1]
    assert np.all(falling[1 : last + 1] <= 1.1 * falling[:last])  # falls from the peak on
    assert falling[last] * 1000 <= counts[peak]
    assert (showers.energy > 10).sum() < 0.05 * showers.mask.sum()  # few cells above 10 MeV (dense cores)


def test_same_seed_same_showers_other_seed_other_showers():
    a = simulate_showers(20, seed=7, progress=False)
    b = simulate_showers(20, seed=7, progress=False)
    c = simulate_showers(20, seed=8, progress=False)
    np.testing.assert_array_equal(a.hits, b.hits)
    np.testing.assert_array_equal(a.incident_energy, b.incident_energy)
    assert not np.array_equal(a.incident_energy, c.incident_energy)
    assert not np.array_equal(a.hits, c.hits)


def test_hits_sorted_inside_the_grid_and_valid():
    showers = simulate_showers(150, energy=(10.0, 100.0), seed=5, batch_size=64, progress=False)
    check_showers(showers, source="simulate_showers")
    assert showers.hits.dtype == np.float32 and showers.hits.shape == (150, 1700, 4)
    assert np.all((showers.incident_energy >= 10) & (showers.incident_energy <= 100))
    energy = showers.energy
    assert np.all(np.diff(energy, axis=1) <= 0)  # descending, so the zero padding comes last
    coordinates = showers.hits[..., :3][showers.mask]
    np.testing.assert_array_equal(coordinates, np.round(coordinates))
    assert coordinates.min() >= 0 and coordinates.max() <= GRID_SIZE - 1
    # no cell twice in a shower
    cell = (showers.x * GRID_SIZE + showers.y) * N_LAYERS + showers.z
    for row, mask in zip(cell, showers.mask, strict=True):
        assert len(np.unique(row[mask])) == mask.sum()
    # the photon enters at the centre: the transverse centre of gravity is the grid's (14.5)
    cog_x = (showers.x * energy).sum(axis=1) / energy.sum(axis=1)
    cog_y = (showers.y * energy).sum(axis=1) / energy.sum(axis=1)
    assert abs(cog_x.mean() - 14.5) < 0.3 and abs(cog_y.mean() - 14.5) < 0.3

    # a smaller max_hits keeps the most energetic hits of the same showers
    few = simulate_showers(150, energy=(10.0, 100.0), seed=5, batch_size=64, max_hits=50, progress=False)
    np.testing.assert_array_equal(few.hits, showers.hits[:, :50])


def test_fixed_energy_and_config():
    showers = simulate_showers(5, energy=42.0, seed=0, progress=False)
    assert np.all(showers.incident_energy == np.float32(42.0))
    half = simulate_showers(
        5, energy=42.0, seed=0, progress=False, config=SimulationConfig(sampling_fraction_scale=0.5)
    )
    ratio = half.energy.sum() / showers.energy.sum()
    assert 0.4 < ratio < 0.6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be a positive"),
        ({"n": -3}, "n must be a positive"),
        ({"n": 2.5}, "n must be a positive"),
        ({"n": 5, "energy": 0.0}, "energy must be positive"),
        ({"n": 5, "energy": -10.0}, "energy must be positive"),
        ({"n": 5, "energy": (100.0, 10.0)}, "low <= high"),
        ({"n": 5, "energy": (10.0,)}, "energy must be a number or a range"),
        ({"n": 5, "energy": (10.0, float("nan"))}, "energy must be a number or a range"),
        ({"n": 5, "max_hits": 0}, "max_hits must be an integer >= 1"),
        ({"n": 5, "batch_size": 0}, "batch_size must be an integer >= 1"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    n = kwargs.pop("n")
    with pytest.raises(ValueError, match=message):
        simulate_showers(n, progress=False, **kwargs)


def test_chunks_are_the_same_showers_and_the_dataset_is_cached(tmp_path):
    from omnijet_lib.data.shower_files import read_showers, shower_file_info
    from omnijet_lib.data.shower_simulation import iter_simulated_showers, shower_dataset
    from omnijet_lib.data.showers import concatenate_showers
    from omnijet_lib.errors import BadDataError

    whole = simulate_showers(150, seed=9, batch_size=32, progress=False)
    chunks = list(iter_simulated_showers(150, seed=9, batch_size=32, chunk_size=50, progress=False))
    assert [len(c) for c in chunks] == [64, 64, 22]  # whole batches of 32
    joined = concatenate_showers(chunks)
    np.testing.assert_array_equal(joined.hits, whole.hits)
    np.testing.assert_array_equal(joined.incident_energy, whole.incident_energy)

    path = shower_dataset(40, seed=2, energy=(10, 20), data_dir=tmp_path, progress=False)
    assert path.name == "photons_10-20GeV_40_seed2.h5"
    info = shower_file_info(path)
    assert info["n_showers"] == 40 and info["seed"] == 2 and info["incident_energy_gev"] == [10.0, 20.0]
    expected = simulate_showers(40, seed=2, energy=(10, 20), progress=False)
    np.testing.assert_array_equal(read_showers(path).hits, expected.hits)
    stamp = path.stat().st_mtime_ns
    assert shower_dataset(40, seed=2, energy=(10, 20), data_dir=tmp_path, progress=False) == path
    assert path.stat().st_mtime_ns == stamp  # reused, not simulated again
    assert shower_dataset(5, seed=2, energy=50.0, data_dir=tmp_path, progress=False).name == "photons_50GeV_5_seed2.h5"

    other = tmp_path / "photons_10-20GeV_41_seed2.h5"
    path.rename(other)  # a file under a name that promises another count
    with pytest.raises(BadDataError, match="holds 40 showers, not 41"):
        shower_dataset(41, seed=2, energy=(10, 20), data_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="positive number of showers"):
        shower_dataset(0, seed=2, data_dir=tmp_path)
