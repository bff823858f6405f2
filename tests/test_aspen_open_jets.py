"""The Aspen Open Jets reader on small HDF5 files written here in the AOJ layout (see the module's docstring)."""

import warnings

import h5py
import numpy as np
import pytest

from omnijet_lib.cli import main
from omnijet_lib.data.aspen_open_jets import (
    MAX_PFCANDS,
    CappedJetsWarning,
    EmptyJetsWarning,
    import_aspen_open_jets,
    iter_aspen_open_jets,
    read_aspen_open_jets,
)
from omnijet_lib.data.jet_files import jet_file_info, read_jets
from omnijet_lib.data.jets import JET_FIELDS, UNLABELLED, label_index
from omnijet_lib.errors import BadDataError, SchemaError
from omnijet_lib.observables import delta_phi

PDG_CHARGE = {22: 0, 130: 0, 211: 1, -211: -1, 11: -1, -11: 1, 13: -1, -13: 1, 1: 0, 2: 0}
PDG_MASS = {22: 0.0, 130: 0.4976, 211: 0.1396, -211: 0.1396, 11: 0.000511, -11: 0.000511, 13: 0.1057, -13: 0.1057}


def write_aoj_file(path, counts, *, seed=0, width=MAX_PFCANDS, n_features=11, drop=(), edit=None):
    """A file in the layout of the AOJ processing code (H5_maker.py, class Outputer); returns the truth.

    Jets have ``counts`` candidates each (0 makes a jet of padding only); candidates are
    (pt, eta, phi, m) turned into (px, py, pz, E) float32 and sorted by pT, descending, in
    zero-padded rows of ``width``.  ``edit(arrays)`` may spoil the arrays before writing.
    """
    rng = np.random.default_rng(seed)
    counts = np.asarray(counts)
    n, m = len(counts), int(counts.sum())
    jet_of = np.repeat(np.arange(n), counts)
    jet_eta, jet_phi = rng.uniform(-2.5, 2.5, n), rng.uniform(-np.pi, np.pi, n)
    pt = rng.exponential(20, m) + 0.5
    eta = jet_eta[jet_of] + rng.normal(0, 0.2, m)
    phi = np.mod(jet_phi[jet_of] + rng.normal(0, 0.2, m) + np.pi, 2 * np.pi) - np.pi
    pdg = rng.choice(list(PDG_CHARGE), m)
    mass = np.array([PDG_MASS.get(p, 0.0) for p in pdg])
    four = np.stack(
        [pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2)]
    )
    rows = np.zeros((n, width, 11), dtype=np.float32)
    truth = {"counts": counts, "pt": [], "eta": [], "phi": [], "pdg": [], "jet_mass": np.zeros(n)}
    for j in range(n):
        mine = np.flatnonzero(jet_of == j)
        cands = np.zeros((len(mine), 11))
        cands[:, :4] = four[:, mine].T
        cands[:, 4:8] = rng.normal(0, 0.01, (len(mine), 4))  # d0, d0Err, dz, dzErr
        cands[:, 8] = [PDG_CHARGE[p] for p in pdg[mine]]
        cands[:, 9] = pdg[mine]
        cands[:, 10] = rng.uniform(0, 1, len(mine))  # puppiWeight
        cands = cands.astype(np.float32)
        order = np.flip(np.argsort(np.sqrt(cands[:, 0] ** 2 + cands[:, 1] ** 2)))  # as Outputer.sort_pfcands
        rows[j, : len(mine)] = cands[order]
        for key, values in (("pt", pt), ("eta", eta), ("phi", phi), ("pdg", pdg)):
            truth[key].append(values[mine][order])
        e, px, py, pz = (cands[:, k].astype(np.float64).sum() for k in (3, 0, 1, 2))
        truth["jet_mass"][j] = np.sqrt(max(e**2 - px**2 - py**2 - pz**2, 0.0))
    truth |= {k: np.concatenate(truth[k]) if m else np.zeros(0) for k in ("pt", "eta", "phi", "pdg")}
    arrays = {
        "event_info": np.stack([np.full(n, 280000), rng.integers(1, 500, n), np.arange(n)], axis=1).astype(np.int64),
        "jet_kinematics": np.stack(
            [rng.uniform(300, 1000, n), jet_eta, jet_phi, rng.uniform(10, 200, n)], axis=1
        ).astype(np.float32),
        "jet_tagging": np.concatenate([counts[:, None], rng.random((n, 12))], axis=1).astype(np.float32),
        "PFCands": rows if n_features == 11 else np.zeros((n, width, n_features), dtype=np.float32),
    }
    if edit is not None:
        edit(arrays)
    truth["jet_kinematics"] = arrays["jet_kinematics"]
    with h5py.File(path, "w") as file:  # as Outputer.write_out creates them
        for name, data in arrays.items():
            if name in drop:
                continue
            compression = None if name == "event_info" else "gzip"
            file.create_dataset(name, data=data, chunks=True, maxshape=(None, *data.shape[1:]), compression=compression)
    return truth


def _quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning expected
        return function(*args, **kwargs)


def _assert_same_jets(a, b):
    assert len(a) == len(b)
    for field in JET_FIELDS:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for field, values in a.flat_constituents().items():
        np.testing.assert_array_equal(values, b.flat_constituents()[field])
    np.testing.assert_array_equal(a.n_constituents, b.n_constituents)


def test_known_jets_come_back_without_padding(tmp_path):
    counts = np.random.default_rng(1).integers(1, 40, 30)
    truth = write_aoj_file(tmp_path / "aoj_0.h5", counts)
    jets = _quiet(read_aspen_open_jets, tmp_path / "aoj_0.h5")

    np.testing.assert_array_equal(jets.n_constituents, counts)  # the padding rows are gone
    flat = jets.flat_constituents()
    assert (flat["pt"] > 0).all()
    np.testing.assert_allclose(flat["pt"], truth["pt"], rtol=1e-6)
    np.testing.assert_allclose(flat["eta"], truth["eta"], atol=2e-6)
    np.testing.assert_allclose(delta_phi(flat["phi"], truth["phi"]), 0, atol=2e-6)
    np.testing.assert_array_equal(flat["pdg_id"], truth["pdg"])
    np.testing.assert_array_equal(flat["charge"], [PDG_CHARGE[p] for p in truth["pdg"]])

    kinematics = truth["jet_kinematics"]
    np.testing.assert_array_equal(jets.pt, kinematics[:, 0])
    np.testing.assert_array_equal(jets.eta, kinematics[:, 1])
    np.testing.assert_array_equal(jets.phi, kinematics[:, 2])
    np.testing.assert_allclose(jets.mass, truth["jet_mass"], rtol=1e-5, atol=1e-3)  # summed candidates, not msoftdrop
    assert (jets.label == UNLABELLED).all()
    assert (read_aspen_open_jets(tmp_path / "aoj_0.h5", label="QCD").label == label_index("QCD")).all()


def test_streaming_two_files_in_small_steps_and_max_jets(tmp_path):
    write_aoj_file(tmp_path / "aoj_0.h5", np.arange(1, 31), seed=2)
    write_aoj_file(tmp_path / "aoj_1.h5", np.arange(25, 0, -1), seed=3)
    pattern = tmp_path / "aoj_*.h5"
    whole = read_aspen_open_jets(pattern, step_size=1000)
    assert len(whole) == 55

    batches = list(iter_aspen_open_jets(pattern, step_size=7, progress=False))
    assert max(len(b) for b in batches) <= 7  # never more than one step in memory
    _assert_same_jets(read_aspen_open_jets(pattern, step_size=7), whole)

    for max_jets in (3, 30, 45):  # within the first file, at its end, across the boundary
        _assert_same_jets(read_aspen_open_jets(pattern, max_jets=max_jets, step_size=7), whole[:max_jets])


def test_import_writes_the_project_schema_with_provenance(tmp_path):
    write_aoj_file(tmp_path / "aoj_0.h5", np.arange(1, 21), seed=4)
    out = import_aspen_open_jets(tmp_path / "aoj_0.h5", tmp_path / "out" / "aoj.h5", step_size=6, progress=False)
    _assert_same_jets(read_jets(out), read_aspen_open_jets(tmp_path / "aoj_0.h5"))
    info = jet_file_info(out)
    assert info["domain"] == "aspen_open_jets" and info["n_jets"] == 20 and info["label"] == "unlabelled"
    assert info["source_files"] == [str(tmp_path / "aoj_0.h5")]


def test_import_command(tmp_path, capsys):
    write_aoj_file(tmp_path / "aoj_0.h5", np.arange(1, 21), seed=5)
    out = tmp_path / "aoj.h5"
    argv = ["import-aspen-open-jets", str(tmp_path / "aoj_*.h5"), "--out", str(out), "--max-jets", "8"]
    assert main([*argv, "--label", "QCD"]) == 0
    assert f"{out}: 8 jets" in capsys.readouterr().out
    assert (read_jets(out).label == label_index("QCD")).all()

    missing = ["import-aspen-open-jets", str(tmp_path / "none_*.h5"), "--out", str(tmp_path / "x.h5")]
    assert main(missing) == 2
    assert "no Aspen Open Jets file matches" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_missing_file_and_missing_datasets(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Aspen Open Jets file matches .*aoj_9"):
        read_aspen_open_jets(tmp_path / "aoj_9.h5")
    for dataset in ("PFCands", "jet_kinematics"):
        write_aoj_file(tmp_path / "bad.h5", [3, 4], drop=(dataset,))
        with pytest.raises(SchemaError) as err:
            iter_aspen_open_jets(tmp_path / "bad.h5")  # at the call, not at the first batch
        assert f"not found: '{dataset}'" in str(err.value) and "bad.h5" in str(err.value)
    write_aoj_file(tmp_path / "lean.h5", [3, 4], drop=("jet_tagging", "event_info"))  # not read, not required
    assert len(read_aspen_open_jets(tmp_path / "lean.h5")) == 2
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(BadDataError, match="not an HDF5 file .*text.h5"):
        read_aspen_open_jets(tmp_path / "text.h5")


def test_wrong_feature_dimension(tmp_path):
    write_aoj_file(tmp_path / "skimmed.h5", [3, 4], n_features=16)
    with pytest.raises(BadDataError, match=r"/PFCands has shape \(2, 150, 16\), expected \(n_jets, n_rows, 11\)"):
        read_aspen_open_jets(tmp_path / "skimmed.h5")

    def short_kinematics(arrays):
        arrays["jet_kinematics"] = arrays["jet_kinematics"][:, :3]

    write_aoj_file(tmp_path / "short.h5", [3, 4], edit=short_kinematics)
    with pytest.raises(BadDataError, match=r"/jet_kinematics has shape \(2, 3\), expected \(n_jets, 4\).*short.h5"):
        read_aspen_open_jets(tmp_path / "short.h5")


@pytest.mark.parametrize(
    ("spoil", "match"),
    [
        (lambda a: a["PFCands"].__setitem__((4, 2, 0), np.nan), r"non-finite \(NaN/inf\) px.* /PFCands, first in jet \(row\) 4"),
        (lambda a: a["PFCands"].__setitem__((1, 0, 3), np.inf), r"non-finite .* /PFCands, first in jet \(row\) 1"),
        (lambda a: a["jet_kinematics"].__setitem__((3, 1), np.nan), r"non-finite .* /jet_kinematics, first in jet \(row\) 3"),
        (lambda a: a["PFCands"].__setitem__((2, 7, 6), 0.1), r"neither padding .* first in jet \(row\) 2"),  # dz only
    ],
)  # fmt: skip
def test_bad_values_are_refused_naming_the_file_and_the_jet(tmp_path, spoil, match):
    write_aoj_file(tmp_path / "spoilt.h5", [5, 6, 3, 8, 4], edit=spoil)
    with pytest.raises(BadDataError, match=match + r".*spoilt.h5"):
        read_aspen_open_jets(tmp_path / "spoilt.h5")
    with pytest.raises(BadDataError, match=match):
        import_aspen_open_jets(tmp_path / "spoilt.h5", tmp_path / "out.h5", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spoilt.h5"]  # no half-written output


def test_empty_jets_are_dropped_and_full_jets_flagged(tmp_path):
    write_aoj_file(tmp_path / "aoj_0.h5", [4, 0, MAX_PFCANDS, 2], seed=6)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        jets = read_aspen_open_jets(tmp_path / "aoj_0.h5")
    np.testing.assert_array_equal(jets.n_constituents, [4, MAX_PFCANDS, 2])  # kept whole, never cut
    empty, capped = (
        [w.message for w in record if isinstance(w.message, kind)] for kind in (EmptyJetsWarning, CappedJetsWarning)
    )
    assert len(record) == 2 and empty[0].indices.tolist() == [1] and capped[0].indices.tolist() == [2]
    assert "dropped 1 jet(s) without any PF candidate (rows 1)" in str(empty[0]) and "aoj_0.h5" in str(empty[0])
    assert "all 150 PFCands rows (rows 2)" in str(capped[0]) and "aoj_0.h5" in str(capped[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptyJetsWarning)  # the documented way to make it an error
        with pytest.raises(EmptyJetsWarning):
            read_aspen_open_jets(tmp_path / "aoj_0.h5")


@pytest.mark.parametrize(
    ("limits", "match"),
    [
        ({"max_jets": 0}, "max_jets must be an integer >= 1, got 0"),
        ({"step_size": 0}, "step_size must be an integer >= 1"),
    ],
)
def test_bad_limits_and_labels_are_refused_before_anything_is_written(tmp_path, limits, match):
    write_aoj_file(tmp_path / "aoj_0.h5", [3, 4])
    with pytest.raises(ValueError, match=match):
        iter_aspen_open_jets(tmp_path / "aoj_0.h5", **limits)
    with pytest.raises(ValueError, match=match):
        import_aspen_open_jets(tmp_path / "aoj_0.h5", tmp_path / "out" / "aoj.h5", **limits)
    with pytest.raises(KeyError, match="unknown jet class 'top'"):
        import_aspen_open_jets(tmp_path / "aoj_0.h5", tmp_path / "out" / "aoj.h5", label="top")
    assert [p.name for p in tmp_path.iterdir()] == ["aoj_0.h5"]
