import numpy as np
import pytest
from test_shower_files import make_showers

from omnijet_lib.data.shower_preprocessing import (
    ShowerPreprocessingConfig,
    _offsets,
    preprocess_showers,
    showers_from_features,
    voxelise,
)
from omnijet_lib.data.geometry import cylindrical_geometry
from omnijet_lib.data.shower_files import check_cells
from omnijet_lib.data.showers import Showers
from omnijet_lib.errors import BadDataError


def _by_energy(showers: Showers) -> np.ndarray:
    """Each shower's hits sorted by energy (descending), padding last: an order-free view of a shower."""
    order = np.argsort(-showers.energy, axis=1, kind="stable")
    return np.take_along_axis(showers.hits, order[..., None], axis=1)


def _showers(hits, incident=50.0) -> Showers:
    hits = np.asarray(hits, dtype=np.float32)
    return Showers(hits, np.full(len(hits), incident, dtype=np.float32))


# --- pre-processing ---------------------------------------------------------------------------------------------


def test_preprocessing_round_trip_order_and_padding():
    showers = make_showers([5, 17, 1, 9], max_hits=20)
    config = ShowerPreprocessingConfig(max_hits=24)
    features, mask = preprocess_showers(showers, config)
    assert features.shape == (4, 24, 4) and features.dtype == np.float32 and mask.shape == (4, 24)
    np.testing.assert_array_equal(mask.sum(axis=1), showers.n_hits)
    np.testing.assert_array_equal(mask, np.arange(24) < showers.n_hits[:, None])  # hits first, then padding
    assert (features[~mask] == 0).all()
    log_e = np.where(mask, features[..., 3], -1e9)
    assert (np.diff(log_e, axis=1)[mask[:, 1:]] <= 0).all()  # most energetic first
    back = showers_from_features(features, mask, showers.incident_energy, config)
    assert back.max_hits == 24
    expected = np.pad(_by_energy(showers), ((0, 0), (0, 4), (0, 0)))
    np.testing.assert_allclose(back.hits, expected, rtol=1e-6, atol=2e-6)
    np.testing.assert_array_equal(back.incident_energy, showers.incident_energy)
    assert config.to_dict()["z_shift"] == 15.5


def test_reference_scaling_of_one_hit():
    features, mask = preprocess_showers(_showers([[[14.5, 14.5, 15.5, 1.0], [0, 29, 0, np.e]]]))
    assert features.shape == (1, 1700, 4) and mask.sum() == 2
    np.testing.assert_allclose(features[0, 0], [-4.35, 4.35, -3.1, 2.0], rtol=1e-6)  # E = e MeV sorts first
    np.testing.assert_allclose(features[0, 1], [0.0, 0.0, 0.0, 1.0], atol=1e-7)


def test_too_many_hits_is_an_error_unless_truncation_is_asked_for():
    showers = make_showers([3, 8, 5], seed=2)
    config = ShowerPreprocessingConfig(max_hits=6)
    with pytest.raises(BadDataError, match=r"1 shower\(s\) have more than max_hits = 6 hits \(shower 1 has 8\)"):
        preprocess_showers(showers, config)
    features, mask = preprocess_showers(showers, config, truncate=True)
    assert mask.sum(axis=1).tolist() == [3, 6, 5]
    kept = showers_from_features(features, mask, showers.incident_energy, config)
    np.testing.assert_allclose(kept.hits[1], _by_energy(showers)[1, :6], rtol=1e-6, atol=2e-6)


def test_inverse_keeps_every_masked_hit_and_refuses_nan():
    features = np.zeros((1, 3, 4), dtype=np.float32)
    features[0, :, 3] = [0.0, -200.0, 5.0]  # -200: exp underflows float32
    mask = np.array([[True, True, False]])
    showers = showers_from_features(features, mask, [30.0])
    assert showers.n_hits.tolist() == [2] and showers.energy[0, 1] > 0
    features[0, 0, 0] = np.nan
    with pytest.raises(BadDataError, match="non-finite"):
        showers_from_features(features, mask, [30.0])
    with pytest.raises(ValueError, match="2 incident energies for 1 showers"):
        showers_from_features(features, mask, [30.0, 40.0])


# --- post-processing --------------------------------------------------------------------------------------------


def _check_voxelised(before: Showers, after: Showers):
    """Energy and hit count conserved exactly, every hit on a distinct voxel inside the grid."""
    np.testing.assert_array_equal(after.n_hits, before.n_hits)
    np.testing.assert_array_equal(np.sort(after.energy, axis=1), np.sort(before.energy, axis=1))
    np.testing.assert_array_equal(after.mask, before.mask)  # hits keep their slots
    coordinates = after.hits[..., :3][after.mask]
    assert (coordinates == np.round(coordinates)).all()
    assert coordinates.min() >= 0 and coordinates.max() <= 29
    rows = np.nonzero(after.mask)[0]
    voxel = rows * 27000 + np.ravel_multi_index(coordinates.astype(int).T, (30, 30, 30))
    assert len(np.unique(voxel)) == len(voxel)
    assert (after.hits[~after.mask] == 0).all()


def _reference_voxelise(showers: Showers) -> np.ndarray:
    """voxelise's documented rule, hit by hit in plain Python (slow; small showers only)."""
    shape = showers.geometry.shape
    along_z, anywhere = _offsets(shape)
    wrap = showers.geometry.grid == "cylindrical"  # the angular bin (x) wraps around

    def cell(c, axis):
        index = int(np.floor(float(c) + 0.5))
        index = index % shape[0] if wrap and axis == 0 else index
        return min(max(index, 0), shape[axis] - 1)

    out = np.zeros_like(showers.hits)
    for i, hits in enumerate(showers.hits):
        slots = np.flatnonzero(hits[:, 3] > 0)
        cells = {s: tuple(cell(c, axis) for axis, c in enumerate(hits[s, :3])) for s in slots}
        by_priority = sorted(slots, key=lambda s: (-hits[s, 3], s))
        occupied, pending = set(), []
        for s in by_priority:
            if cells[s] in occupied:
                pending.append(s)
            else:
                occupied.add(cells[s])
        for offsets in ([(0, 0, int(dz)) for dz in along_z], anywhere):
            for offset in offsets:
                if not pending:
                    break
                still = []
                for s in pending:
                    target = tuple(int(c + d) for c, d in zip(cells[s], offset))
                    if all(0 <= t < n for t, n in zip(target, shape)) and target not in occupied:
                        occupied.add(target)
                        cells[s] = target
                    else:
                        still.append(s)
                pending = still
        for s in slots:
            out[i, s] = (*cells[s], hits[s, 3])
    return out


def test_many_hits_in_one_voxel_overflow_the_column():
    energies = np.linspace(5.0, 1.0, 40)  # hit 0 most energetic
    hits = np.zeros((1, 45, 4), dtype=np.float32)
    hits[0, :40] = np.stack([np.full(40, 15.2), np.full(40, 14.9), np.full(40, 10.3), energies], axis=1)
    before = _showers(hits)
    after = voxelise(before)
    _check_voxelised(before, after)
    cells = after.hits[0, :40, :3].astype(int)
    assert cells[0].tolist() == [15, 15, 10]  # the most energetic stays
    assert cells[1].tolist() == [15, 15, 9] and cells[2].tolist() == [15, 15, 11]  # nearest |dz|, smaller z first
    assert sorted(cells[:30, 2].tolist()) == list(range(30)) and (cells[:30, :2] == 15).all()  # the column fills
    # The 10 least energetic find the column full: 3-D nearest free voxels, distance 1 first (dy -1, dx -1, +1, dy +1).
    assert cells[30:34].tolist() == [[15, 14, 10], [14, 15, 10], [16, 15, 10], [15, 16, 10]]
    assert (np.abs(cells[34:] - [15, 15, 10]).sum(axis=1) == 2).all()  # then distance sqrt(2)
    np.testing.assert_array_equal(after.hits, _reference_voxelise(before))


def test_edges_and_outside_are_clipped_into_the_grid():
    coordinates = [-0.4, 29.4, 30.2, -0.5, 29.5, 0.49, 100.0, -7.0]
    hits = np.array([[[c, 29 - i, 3 * i % 30, 1.0 + i] for i, c in enumerate(coordinates)]], dtype=np.float32)
    before = _showers(hits)
    after = voxelise(before)
    _check_voxelised(before, after)
    assert after.x[0].tolist() == [0, 29, 29, 0, 29, 0, 29, 0]  # all distinct (y differs): nothing moved
    corner = _showers([[[29.4, 29.6, 30.2, 1.0], [29.9, 31.0, 29.0, 2.0], [-0.2, -3.0, -0.5, 0.5]]])
    after = voxelise(corner)
    _check_voxelised(corner, after)
    assert after.hits[0, 1, :3].tolist() == [29, 29, 29]  # the more energetic keeps the corner
    assert after.hits[0, 0, :3].tolist() == [29, 29, 28]  # the other moves along z, inward
    assert after.hits[0, 2, :3].tolist() == [0, 0, 0]


def test_voxelise_reports_how_many_hits_it_clipped():
    hits = [
        [[-0.5, 3, 3, 1.0], [29.5, 3, 3, 1.0], [3, -0.6, 3, 1.0], [3, 3, 40.0, 1.0], [99.0, 3, 3, 0.0]],  # padding
        [[0, 0, 0, 1.0], [29.4, 29.4, 29.4, 1.0], [0, 0, 0, 0.0], [0, 0, 0, 0.0], [0, 0, 0, 0.0]],
    ]
    before = _showers(hits)
    after, clipped = voxelise(before, return_clipped=True)
    assert clipped.tolist() == [3, 0]  # -0.5 rounds to cell 0; 29.5 rounds to 30, outside
    np.testing.assert_array_equal(after.hits, voxelise(before).hits)  # the default returns the showers alone


def test_random_continuous_showers_match_the_documented_rule():
    rng = np.random.default_rng(4)
    n, width = 12, 400
    hits = np.zeros((n, width, 4), dtype=np.float32)
    n_hits = rng.integers(1, width + 1, n)
    for i, k in enumerate(n_hits):  # a dense core: many shared voxels and some full columns
        slots = rng.choice(width, k, replace=False)
        hits[i, slots, :2] = rng.normal(14.5, 1.0 + i % 3, (k, 2))
        hits[i, slots, 2] = rng.normal(10.0, 4.0, k)
        hits[i, slots, 3] = rng.choice([0.5, 1.0, 2.0], k) if i % 2 else rng.exponential(1.0, k) + 1e-4
    before = _showers(hits)
    after = voxelise(before, chunk_size=5)
    _check_voxelised(before, after)
    np.testing.assert_array_equal(after.energy, before.energy)
    np.testing.assert_array_equal(after.hits, voxelise(before).hits)  # chunking changes nothing
    np.testing.assert_array_equal(after.hits, _reference_voxelise(before))


def test_voxelising_onto_a_cylindrical_grid_keeps_energy_and_hits():
    """A small non-cubic cylindrical grid (8 angular bins that wrap, 5 radial, 6 layers), crowded enough
    that columns fill up and hits move across the grid."""
    geometry = cylindrical_geometry("small", n_alpha=8, radial_edges_mm=[0, 2, 5, 10, 20, 40], n_layers=6)
    rng = np.random.default_rng(7)
    hits = np.zeros((6, 150, 4), dtype=np.float32)
    for i, k in enumerate(rng.integers(20, 150, 6)):
        hits[i, :k, 0] = rng.uniform(-1.0, 8.5, k)  # angle: below 0 and at 7.6 wrap onto bins 7 and 0
        hits[i, :k, 1] = np.abs(rng.normal(0.0, 1.5, k))  # a dense core at small radius
        hits[i, :k, 2] = rng.normal(2.5, 1.5, k)
        hits[i, :k, 3] = rng.exponential(1.0, k) + 1e-3
    before = Showers(hits, np.full(6, 50.0, dtype=np.float32), geometry)
    after, clipped = voxelise(before, return_clipped=True)
    assert after.geometry == geometry
    np.testing.assert_array_equal(after.n_hits, before.n_hits)
    np.testing.assert_allclose(after.energy.sum(axis=1), before.energy.sum(axis=1), rtol=1e-6)
    check_cells(after, source="voxelised")  # whole cells, one hit per cell, inside the 8 x 5 x 6 grid
    np.testing.assert_array_equal(after.hits, _reference_voxelise(before))
    outside = (hits[..., 1] >= 4.5) | (hits[..., 2] < -0.5) | (hits[..., 2] >= 5.5)  # never for the angle
    np.testing.assert_array_equal(clipped, (outside & before.mask).sum(axis=1))
    lone = Showers(np.array([[[-0.7, 0.0, 0.0, 1.0], [7.6, 1.0, 0.0, 1.0]]], dtype=np.float32), np.ones(1), geometry)
    np.testing.assert_array_equal(voxelise(lone).x, [[7.0, 0.0]])  # the angle wraps, it is not clipped


def test_showers_without_shared_voxels_are_untouched():
    showers = make_showers([1, 50, 900, 3], max_hits=1000, seed=5)
    np.testing.assert_array_equal(voxelise(showers).hits, showers.hits)
    twice = voxelise(voxelise(_showers(np.random.default_rng(0).uniform(0, 29, (3, 100, 4)))))
    np.testing.assert_array_equal(voxelise(twice).hits, twice.hits)


def test_a_full_grid_is_filled_and_more_hits_are_refused():
    rng = np.random.default_rng(6)
    hits = np.concatenate([rng.uniform(-0.5, 29.5, (1, 27000, 3)), rng.uniform(0.1, 2, (1, 27000, 1))], axis=2)
    before = _showers(hits)
    after = voxelise(before)
    _check_voxelised(before, after)
    with pytest.raises(BadDataError, match="shower 1 has 27001 hits, more than the 27000 voxels"):
        voxelise(_showers(np.ones((2, 27001, 4)) * [[[1.0]], [[1.0]]] * (np.arange(27001) < [[1], [27001]])[..., None]))


def test_voxelise_refuses_what_it_cannot_place():
    with pytest.raises(BadDataError, match="NaN"):
        voxelise(_showers([[[np.nan, 1, 1, 1.0]]]))
    with pytest.raises(BadDataError, match="finite and >= 0"):
        voxelise(_showers([[[1, 1, 1, -1.0]]]))
