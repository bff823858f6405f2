import h5py
import numpy as np
import pytest

from omnijet_lib.data.shower_files import (
    ShowerFileWriter,
    iter_showers,
    read_showers,
    shower_file_info,
    write_shower_chunks,
    write_showers,
)
from omnijet_lib.data.showers import Showers, concatenate_showers
from omnijet_lib.errors import BadDataError, SchemaError


def make_showers(n_hits, *, max_hits=None, seed=0) -> Showers:
    """Synthetic showers on the grid, hits in random slots (padding between hits too)."""
    rng = np.random.default_rng(seed)
    n_hits = np.asarray(n_hits)
    width = max_hits or int(n_hits.max())
    hits = np.zeros((len(n_hits), width, 4), dtype=np.float32)
    for i, n in enumerate(n_hits):
        slots = rng.choice(width, n, replace=False)
        voxels = rng.choice(30**3, n, replace=False)
        hits[i, slots, 0], hits[i, slots, 1], hits[i, slots, 2] = np.unravel_index(voxels, (30, 30, 30))
        hits[i, slots, 3] = rng.exponential(1.0, n) + 0.01
    return Showers(hits, rng.uniform(10, 100, len(n_hits)).astype(np.float32))


def _assert_same(a: Showers, b: Showers):
    np.testing.assert_array_equal(a.hits, b.hits)
    np.testing.assert_array_equal(a.incident_energy, b.incident_energy)


@pytest.mark.parametrize("layout", ["reference", "caloclouds"])
def test_round_trip_chunks_and_info(tmp_path, layout):
    showers = make_showers(np.arange(1, 24), max_hits=30)
    path = write_showers(tmp_path / "s.h5", showers, layout=layout, provenance={"generator": "test", "seed": [1, 2]})
    _assert_same(read_showers(path), showers)
    _assert_same(read_showers(path, start=5, stop=9), showers[5:9])
    chunks = list(iter_showers(path, chunk_size=5))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
    _assert_same(concatenate_showers(chunks), showers)
    info = shower_file_info(path)
    assert info["n_showers"] == 23 and info["max_hits"] == 30 and info["layout"] == layout
    assert info["generator"] == "test" and info["seed"] == [1, 2] and info["schema"] == "omnijet-showers"
    with h5py.File(path) as f:
        name = "showers" if layout == "reference" else "events"
        assert f[name].shape == ((23, 30, 4) if layout == "reference" else (23, 4, 30))
        assert f["energy"].shape == (23, 1)
    with pytest.raises(IndexError, match="outside the file's 23 showers"):
        read_showers(path, start=20, stop=24)


def test_writer_appends_batches_of_any_width(tmp_path):
    a, b, c = make_showers([3, 5], seed=1), make_showers([9, 2, 4], seed=2), make_showers([1], seed=3)
    path = write_shower_chunks(tmp_path / "s.h5", iter([a, b, c]), layout="caloclouds")
    _assert_same(read_showers(path), concatenate_showers([a, b, c]))
    assert shower_file_info(path)["max_hits"] == 9


def test_foreign_files_read_alike(tmp_path):
    showers = make_showers([4, 7, 2])
    ref, calo = tmp_path / "ref.h5", tmp_path / "calo.h5"
    with h5py.File(ref, "w") as f:  # written elsewhere: float64, energy (N,), no attributes
        f["showers"] = showers.hits.astype(np.float64)
        f["energy"] = showers.incident_energy
    with h5py.File(calo, "w") as f:
        f["events"] = showers.hits.transpose(0, 2, 1)
        f["energy"] = showers.incident_energy[:, None]
    _assert_same(read_showers(ref), showers)
    _assert_same(read_showers(calo), showers)
    assert shower_file_info(calo)["layout"] == "caloclouds"


def test_missing_file_and_not_hdf5(tmp_path):
    with pytest.raises(FileNotFoundError, match="shower file not found: .*nothere.h5"):
        read_showers(tmp_path / "nothere.h5")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(BadDataError, match="not an HDF5 file.*notes.h5"):
        read_showers(text)


def test_neither_layout_lists_the_keys(tmp_path):
    path = tmp_path / "jets.h5"
    with h5py.File(path, "w") as f:
        f["jets/pt"] = np.ones(3)
        f["shower"] = np.zeros((2, 5, 4))
    with pytest.raises(SchemaError, match=r"not found: 'showers'\n.*'shower', 'jets'(.|\n)*jets\.h5(.|\n)*'events'"):
        read_showers(path)
    with h5py.File(path, "a") as f:
        f["showers"] = np.ones((2, 5, 4))
    with pytest.raises(SchemaError, match=r"not found: 'energy'(.|\n)*jets\.h5"):
        read_showers(path)


@pytest.mark.parametrize(
    ("datasets", "match"),
    [
        ({"showers": (2, 5, 3), "energy": (2, 1)}, r"/showers has shape \(2, 5, 3\)"),
        ({"showers": (2, 20), "energy": (2, 1)}, r"/showers has shape \(2, 20\)"),
        ({"events": (2, 5, 4), "energy": (2, 1)}, r"/events has shape \(2, 5, 4\)"),
        ({"showers": (2, 5, 4), "energy": (3, 1)}, r"/energy has shape \(3, 1\), expected \(2,\) or \(2, 1\)"),
        ({"showers": (2, 5, 4), "energy": (2, 2)}, r"/energy has shape \(2, 2\)"),
        ({"showers": (2, 5, 4), "events": (2, 4, 5), "energy": (2,)}, "holds both /showers and /events"),
    ],
)
def test_wrong_shapes_name_the_dataset_and_shape(tmp_path, datasets, match):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        for name, shape in datasets.items():
            f[name] = np.ones(shape, dtype=np.float32)
    with pytest.raises(BadDataError, match=match):
        read_showers(path)


@pytest.mark.parametrize(
    ("value", "match"),
    [(np.nan, r"non-finite.*shower 1.*s\.h5"), (30.2, r"outside the 30 × 30 × 30 grid.*s\.h5"), (-1.0, "outside")],
)
def test_bad_values_are_reported_with_the_file(tmp_path, value, match):
    path = write_showers(tmp_path / "s.h5", make_showers([3, 4]))
    with h5py.File(path, "a") as f:
        hits = f["showers"][1]
        slot = np.flatnonzero(hits[:, 3] > 0)[0]
        f["showers"][1, slot, 0] = value
    with pytest.raises(BadDataError, match=match):
        read_showers(path)
    with pytest.raises(BadDataError, match=r"s\.h5 \(showers 1:2, numbered from 1\)"):
        list(iter_showers(path, chunk_size=1))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"x": 2.5}, r"shower 1 has 1 hit\(s\) whose x, y, z are not whole cell indices \(first: \(2\.5, "),
        ("duplicate", r"shower 1 has 1 hit\(s\) in a cell that already holds one \(first: cell \("),
    ],
    ids=["between-cells", "two-hits-in-a-cell"],
)
def test_a_shower_file_holds_one_hit_per_whole_cell(tmp_path, change, match):
    """A file is a calorimeter's readout; continuous or shared cells would be binned wrongly without a word."""
    showers = make_showers([3, 4])
    hits = showers.hits.copy()
    slots = np.flatnonzero(hits[1, :, 3] > 0)
    if change == "duplicate":
        hits[1, slots[1], :3] = hits[1, slots[0], :3]
    else:
        hits[1, slots[0], 0] = change["x"]
    bad = Showers(hits, showers.incident_energy)
    with pytest.raises(BadDataError, match=match + r".*written to .*s\.h5.*voxelise"):
        write_showers(tmp_path / "s.h5", bad)
    assert not list(tmp_path.iterdir())
    path = write_showers(tmp_path / "s.h5", showers)
    with h5py.File(path, "a") as f:  # a file written elsewhere
        f["showers"][...] = hits
    with pytest.raises(BadDataError, match=match + r".*s\.h5 \(showers 0:2\)"):
        read_showers(path)
    with pytest.raises(BadDataError, match=r"shower 0 has 1 hit.*s\.h5 \(showers 1:2, numbered from 1\)"):
        list(iter_showers(path, chunk_size=1))


def test_an_aborted_write_leaves_no_file(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(RuntimeError), ShowerFileWriter(path) as writer:
        writer.append(make_showers([3, 4]))
        raise RuntimeError("interrupted")
    assert not list(tmp_path.iterdir())
    with pytest.raises(BadDataError, match="without hits"):
        write_showers(path, Showers(np.zeros((1, 3, 4), np.float32), np.ones(1, np.float32)))
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="unknown shower file layout 'hdf'"):
        write_showers(path, make_showers([3]), layout="hdf")
    with pytest.raises(ValueError, match=r"may not set .*\['layout'\]"):
        write_showers(path, make_showers([3]), provenance={"layout": "caloclouds", "seed": 1})
    assert not list(tmp_path.iterdir())
