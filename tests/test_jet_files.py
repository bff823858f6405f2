import h5py
import numpy as np
import pytest
from conftest import make_jets

from omnijet_lib.data.jet_files import JetFileWriter, iter_jets, jet_file_info, read_jets, write_jets
from omnijet_lib.errors import BadDataError, SchemaError


def _assert_same(a, b):
    for field in ("pt", "eta", "phi", "mass", "label", "n_constituents"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for field, values in a.flat_constituents().items():
        np.testing.assert_array_equal(values, b.flat_constituents()[field])


def test_write_read_round_trip_and_streaming(tmp_path):
    jets = make_jets(np.arange(1, 60))
    path = write_jets(tmp_path / "jets.h5", jets, provenance={"generator": "unit test", "settings": ["a = 1"]})
    _assert_same(read_jets(path), jets)
    _assert_same(read_jets(path, start=10, stop=25), jets[10:25])
    chunks = list(iter_jets(path, chunk_size=7))
    assert [len(c) for c in chunks] == [7] * 8 + [3]
    for i, chunk in enumerate(chunks):
        _assert_same(chunk, jets[7 * i : 7 * i + 7])
    info = jet_file_info(path)
    assert info["n_jets"] == 59 and info["generator"] == "unit test" and info["settings"] == ["a = 1"]
    assert info["label_names"][8] == "Tbqq"


def test_older_files_read_under_the_renamed_attributes(tmp_path):
    """Generated files stored a wall-clock rate as jets_per_cpu_second; they read as jets_per_worker_second."""
    old = {"cpu_seconds": 12.0, "jets_per_cpu_second": 5.0}
    info = jet_file_info(write_jets(tmp_path / "old.h5", make_jets([3, 4]), provenance=old))
    assert info["worker_seconds"] == 12.0 and info["jets_per_worker_second"] == 5.0
    assert not set(old) & set(info)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.h5"):
        read_jets(tmp_path / "nothere.h5")


def test_wrong_schema_names_the_key_and_file(tmp_path):
    path = write_jets(tmp_path / "jets.h5", make_jets([3, 4]))
    with h5py.File(path, "a") as f:
        del f["constituents/pdg_id"]
    with pytest.raises(SchemaError) as err:
        read_jets(path)
    assert "'pdg_id'" in str(err.value) and str(path) in str(err.value) and "/constituents" in str(err.value)
    other = tmp_path / "showers.h5"
    with h5py.File(other, "w") as f:
        f["showers"] = np.zeros((2, 5, 4))
    with pytest.raises(SchemaError, match="not found: 'jets'"):
        read_jets(other)


def test_inconsistent_lengths_and_non_hdf5(tmp_path):
    path = write_jets(tmp_path / "jets.h5", make_jets([3, 4]))
    with h5py.File(path, "a") as f:
        f["jets/n_constituents"][1] = 9  # claims constituents the file does not hold
    with pytest.raises(BadDataError, match="sums to 12"):
        read_jets(path)
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(BadDataError, match="not an HDF5 file.*notes.h5"):
        read_jets(text)


def test_nan_in_a_file_is_reported_with_the_file(tmp_path):
    path = write_jets(tmp_path / "jets.h5", make_jets([3, 4]))
    with h5py.File(path, "a") as f:
        f["constituents/phi"][5] = np.nan
    with pytest.raises(BadDataError, match=r"NaN.*phi.*jet 1.*jets\.h5"):
        read_jets(path)


def test_an_aborted_write_leaves_no_file(tmp_path):
    path = tmp_path / "jets.h5"
    with pytest.raises(RuntimeError), JetFileWriter(path) as writer:
        writer.append(make_jets([3, 4]))
        raise RuntimeError("interrupted")
    assert not path.exists() and not list(tmp_path.iterdir())
