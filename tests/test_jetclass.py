"""The JetClass reader on small ROOT files written here with uproot in the real schema."""

import awkward as ak
import numpy as np
import pytest
import uproot

from omnijet_lib.cli import main
from omnijet_lib.data.jet_files import read_jets
from omnijet_lib.data.jetclass import import_jetclass, iter_jetclass, read_jetclass
from omnijet_lib.data.jets import JETCLASS_LABELS, label_index
from omnijet_lib.errors import SchemaError

PARTICLE_FIELDS = (
    "px", "py", "pz", "energy", "deta", "dphi", "charge", "isChargedHadron", "isNeutralHadron",
    "isPhoton", "isElectron", "isMuon", "d0val", "d0err", "dzval", "dzerr",
)  # fmt: skip


def write_jetclass_file(path, n_jets, *, classes, seed=0, drop=()):
    """A JetClass-schema ROOT file; returns the truth it was made from."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 30, n_jets)
    m = counts.sum()
    jet_of = np.repeat(np.arange(n_jets), counts)
    jet_eta, jet_phi = rng.uniform(-2, 2, n_jets), rng.uniform(-np.pi, np.pi, n_jets)
    pt = rng.exponential(20, m) + 0.5
    eta = jet_eta[jet_of] + rng.normal(0, 0.2, m)
    phi = jet_phi[jet_of] + rng.normal(0, 0.2, m)
    kind = rng.integers(0, 5, m)  # charged hadron, neutral hadron, photon, electron, muon
    charge = np.where(np.isin(kind, (0, 3, 4)), rng.choice([-1.0, 1.0], m), 0.0)
    part = {
        "px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta), "energy": pt * np.cosh(eta),
        "deta": eta - jet_eta[jet_of], "dphi": phi - jet_phi[jet_of], "charge": charge,
        **{f: (kind == k).astype(float) for k, f in enumerate(PARTICLE_FIELDS[7:12])},
        **{f: np.zeros(m) for f in PARTICLE_FIELDS[12:]},
    }  # fmt: skip
    labels = rng.choice([label_index(c) for c in classes], n_jets)
    jet_pt = rng.uniform(500, 1000, n_jets)
    jet_mass = rng.uniform(10, 200, n_jets)
    branches = {
        "part": ak.zip({f: ak.unflatten(part[f], counts) for f in PARTICLE_FIELDS if f"part_{f}" not in drop}),
        "jet_pt": jet_pt, "jet_eta": jet_eta, "jet_phi": jet_phi,
        "jet_energy": np.sqrt(jet_mass**2 + (jet_pt * np.cosh(jet_eta)) ** 2),
        "jet_nparticles": counts.astype(float), "jet_sdmass": jet_mass,
        **{f"jet_tau{i}": rng.random(n_jets) for i in range(1, 5)},
        **{f"label_{c}": (labels == i).astype(bool) for i, c in enumerate(JETCLASS_LABELS)},
    }  # fmt: skip
    for name in drop:
        branches.pop(name, None)
    with uproot.recreate(path) as file:  # branch names as in JetClass: part_px, ... counted by npart
        file.mktree("tree", branches, field_name=lambda outer, inner: f"{outer}_{inner}")
    return {"counts": counts, "pt": pt, "eta": eta, "phi": phi, "charge": charge, "kind": kind,
            "labels": labels, "jet_mass": jet_mass, "jet_pt": jet_pt}  # fmt: skip


def test_reader_converts_the_real_schema(tmp_path):
    truth = write_jetclass_file(tmp_path / "TTBar_000.root", 50, classes=("Tbqq", "QCD"))
    jets = read_jetclass(tmp_path / "TTBar_*.root")
    assert len(jets) == 50
    np.testing.assert_array_equal(jets.label, truth["labels"])
    np.testing.assert_array_equal(jets.n_constituents, truth["counts"])
    np.testing.assert_allclose(jets.mass, truth["jet_mass"], rtol=1e-4)
    first = jets.constituents[0]
    order = np.argsort(-truth["pt"][: truth["counts"][0]], kind="stable")
    np.testing.assert_allclose(np.asarray(first.pt), truth["pt"][order], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(first.eta), truth["eta"][order], rtol=1e-5, atol=1e-5)
    pdg = np.abs(ak.to_numpy(ak.flatten(jets.constituents.pdg_id)))
    assert set(np.unique(pdg)) <= {211, 130, 22, 11, 13}


def test_class_choice_streaming_and_max_jets(tmp_path):
    write_jetclass_file(tmp_path / "TTBar_000.root", 40, classes=("Tbqq",), seed=1)
    write_jetclass_file(tmp_path / "ZJetsToNuNu_000.root", 40, classes=("QCD", "Zqq"), seed=2)
    files = [tmp_path / "TTBar_*.root", tmp_path / "ZJetsToNuNu_*.root"]
    whole = read_jetclass(files, classes=["Tbqq", "QCD"])
    assert set(np.unique(whole.label)) == {label_index("Tbqq"), label_index("QCD")}
    batches = list(iter_jetclass(files, classes=["Tbqq", "QCD"], step_size=7))
    assert max(len(b) for b in batches) <= 7  # never more than one step in memory
    assert sum(len(b) for b in batches) == len(whole)
    assert len(read_jetclass(files, max_jets=45, step_size=7)) == 45

    out = import_jetclass(files, tmp_path / "jetclass.h5", classes=["Tbqq", "QCD"], step_size=7)
    stored = read_jets(out)
    np.testing.assert_array_equal(stored.label, whole.label)
    np.testing.assert_array_equal(stored.flat_constituents()["pt"], whole.flat_constituents()["pt"])


def test_missing_branch_and_missing_file(tmp_path):
    write_jetclass_file(tmp_path / "bad.root", 5, classes=("QCD",), drop=("part_pz",))
    with pytest.raises(SchemaError) as err:
        read_jetclass(tmp_path / "bad.root")
    assert "'part_pz'" in str(err.value) and "bad.root" in str(err.value) and "/tree" in str(err.value)
    with pytest.raises(FileNotFoundError, match="TTBar_9"):
        read_jetclass(tmp_path / "TTBar_9*.root")


def test_import_command_reports_errors_cleanly(tmp_path, capsys):
    assert main(["import-jetclass", str(tmp_path / "none_*.root"), "--out", str(tmp_path / "x.h5")]) == 2
    assert "no JetClass file matches" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize(
    ("limits", "match"),
    [
        ({"max_jets": -5}, "max_jets must be an integer >= 1, got -5"),  # was: 25 of 30 jets, silently
        ({"max_jets": 0}, "max_jets must be an integer >= 1, got 0"),  # was: "no jets of classes ..."
        ({"step_size": 0}, "step_size must be an integer >= 1, got 0"),  # was: "range() arg 3 must not be zero"
        ({"step_size": -1}, "step_size must be an integer >= 1, got -1"),
    ],
)
def test_bad_limits_are_refused_before_anything_is_written(tmp_path, limits, match):
    write_jetclass_file(tmp_path / "TTBar_000.root", 30, classes=("Tbqq",))
    with pytest.raises(ValueError, match=match):
        read_jetclass(tmp_path / "TTBar_*.root", **limits)
    with pytest.raises(ValueError, match=match):
        iter_jetclass(tmp_path / "TTBar_*.root", **limits)  # at the call, not at the first batch
    with pytest.raises(ValueError, match=match):
        import_jetclass(tmp_path / "TTBar_*.root", tmp_path / "out" / "jetclass.h5", **limits)
    assert [p.name for p in tmp_path.iterdir()] == ["TTBar_000.root"]
