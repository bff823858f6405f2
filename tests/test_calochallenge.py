"""CaloChallenge 2022 files: binning XML, voxel order, round trips and clear refusals, on files written here."""

import dataclasses
import warnings

import h5py
import numpy as np
import pytest

from omnijet_lib.data.calochallenge import (
    CaloChallengeWriter,
    EmptyShowersWarning,
    iter_calochallenge,
    read_binning,
    read_calochallenge,
    write_binning,
    write_calochallenge,
)
from omnijet_lib.data.geometry import ILD_ECAL, cylindrical_geometry
from omnijet_lib.data.showers import Showers, concatenate_showers
from omnijet_lib.errors import BadDataError, SchemaError

# Radial edges [mm] of CaloChallenge datasets 2 (9 bins) and 3 (18 bins), as in code/binning_dataset_{2,3}.xml.
DS2_EDGES = (0, 4.65, 9.3, 13.95, 18.6, 23.25, 27.9, 32.55, 37.2, 41.85)
DS3_EDGES = tuple(np.round(np.arange(19) * 2.325, 3))
DS2 = cylindrical_geometry(
    "calochallenge_electron_45x16x9", n_alpha=16, radial_edges_mm=DS2_EDGES, n_layers=45,
    source="CaloChallenge 2022 binning file, particle 'electron'; material of datasets 2 and 3",
)  # fmt: skip
DS3 = cylindrical_geometry("ds3", n_alpha=50, radial_edges_mm=DS3_EDGES, n_layers=45)
N_LAYER_VOXELS = 16 * 9

# The CaloChallenge layout, as in its code/binning_dataset_2.xml (one layer line repeated for the 45 layers).
DS2_LAYER = '      <Layer id="{}" r_edges="0,4.65,9.3,13.95,18.6,23.25,27.9,32.55,37.2,41.85" n_bin_alpha="16" />\n'
DS2_XML = '<Bins>\n   <Bin pid="11" name="electron">\n{}   </Bin>\n</Bins>\n'


def ds2_xml(layers=None) -> str:
    return DS2_XML.format("".join(layers or [DS2_LAYER.format(i) for i in range(45)]))


def write_file(path, voxels, incident_mev, *, skip=()):
    """A CaloChallenge file written directly with h5py, as the challenge distributes them."""
    with h5py.File(path, "w") as f:
        if "showers" not in skip:
            f.create_dataset("showers", data=voxels)
        if "incident_energies" not in skip:
            f.create_dataset("incident_energies", data=incident_mev)
    return path


def random_voxels(n, *, seed=0, n_cells=DS2.n_cells, empty=()):
    rng = np.random.default_rng(seed)
    voxels = np.zeros((n, n_cells), dtype=np.float32)
    for i in range(n):
        if i not in empty:
            cells = rng.choice(n_cells, rng.integers(1, 60), replace=False)
            voxels[i, cells] = rng.exponential(5.0, len(cells)).astype(np.float32) + np.float32(0.01)
    incident = rng.uniform(1e3, 1e6, (n, 1))  # MeV, 1 GeV - 1 TeV as in datasets 2 and 3
    return voxels, incident


def assert_same(a: Showers, b: Showers):
    """Equal showers, whatever padding each carries (a batch is padded to its own widest shower)."""
    width = max(a.max_hits, b.max_hits)
    np.testing.assert_array_equal(*(np.pad(s.hits, ((0, 0), (0, width - s.max_hits), (0, 0))) for s in (a, b)))
    np.testing.assert_array_equal(a.incident_energy, b.incident_energy)
    assert a.geometry == b.geometry


def test_binning_written_and_by_hand_parse_to_dataset_2_geometry(tmp_path):
    by_hand = tmp_path / "binning_dataset_2.xml"
    by_hand.write_text(ds2_xml())
    written = write_binning(tmp_path / "written.xml", DS2)
    for path in (by_hand, written):
        geometry = read_binning(path)
        assert geometry == DS2  # name, radial edges, material: all fields
        assert geometry.grid == "cylindrical" and geometry.shape == (16, 9, 45) and geometry.n_cells == 6480
        assert geometry.radial_edges_mm == DS2_EDGES
    text = written.read_text()
    assert '<Bin pid="11" name="electron">' in text and text.count("<Layer ") == 45
    assert '<Layer id="44" r_edges="0,4.65,9.3,13.95,18.6,23.25,27.9,32.55,37.2,41.85" n_bin_alpha="16" />' in text
    assert not list(tmp_path.glob("*.tmp"))
    # another particle, and the 45 x 50 x 18 dataset 3
    photon = read_binning(write_binning(tmp_path / "photon.xml", DS3, particle="photon"), particle="photon")
    assert photon.name == "calochallenge_photon_45x50x18" and photon.n_cells == 40500
    assert photon.radial_edges_mm == DS3_EDGES


def test_binning_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="binning file not found"):
        read_binning(tmp_path / "missing.xml")
    good = tmp_path / "good.xml"
    good.write_text(ds2_xml())
    with pytest.raises(SchemaError, match=r"not found: 'pion'\n    Available keys: 'electron'"):
        read_binning(good, particle="pion")

    def rejected(layers, match):
        path = tmp_path / "bad.xml"
        path.write_text(ds2_xml(layers))
        with pytest.raises(BadDataError, match=match):
            read_binning(path)

    layers = [DS2_LAYER.format(i) for i in range(45)]
    # unequal binning per layer, as in dataset 1: refused with the reason
    rejected(
        [layers[0], '<Layer id="1" r_edges="0,2,4,6" n_bin_alpha="10" />', *layers[2:]],
        r"layer 1 .* has 10 α × 3 r bins .* layer 0 16 α × 9 r bins .* same α and r bins in every layer",
    )
    rejected([layers[0], layers[1].replace('"16"', '"8"'), *layers[2:]], "layer 1 .* 8 α × 9 r bins")
    rejected([layers[0], layers[1].replace("41.85", "40"), *layers[2:]], r"r_edges 0,4\.65,.*,40\),")
    # malformed layers
    rejected([layers[0].replace('n_bin_alpha="16"', 'n_bin_alpha="many"'), *layers[1:]], "malformed: .*'many'")
    rejected([layers[0].replace(' n_bin_alpha="16"', ""), *layers[1:]], r"lacks the attribute\(s\) \['n_bin_alpha'\]")
    rejected([layers[0].replace("0,4.65", "1,4.65"), *layers[1:]], "increasing edges from 0")
    rejected([layers[0].replace("9.3,13.95", "13.95,9.3"), *layers[1:]], "increasing edges from 0")
    rejected([layers[1], layers[0], *layers[2:]], "has id 1; layers must be numbered 0, 1, 2")
    rejected(['<Layer id="0" r_edges="0" n_bin_alpha="1" />'], "increasing edges from 0")
    rejected(["<Wrong />"], "is not a <Layer>")
    rejected(["<Layer"], "not an XML file")
    with pytest.raises(ValueError, match="needs a cylindrical geometry.*'ild_ecal' is cartesian"):
        write_binning(tmp_path / "ild.xml", ILD_ECAL)


def test_hand_written_file_reads_voxels_at_their_cells(tmp_path):
    """Voxel order: layer-major, then α, then r fastest (CaloChallenge code/XMLHandler.py, HighLevelFeatures.py)."""
    known = {  # (shower, layer, alpha, r): energy [MeV]; (0, 1, 0) and (0, 0, 1) differ only in the order
        (0, 0, 0, 1): 1.5,
        (0, 0, 1, 0): 2.5,
        (0, 3, 7, 2): 0.25,
        (0, 44, 15, 8): 7.0,
        (1, 10, 0, 0): 3.0,
        (2, 22, 15, 0): 0.125,
        (2, 22, 0, 8): 4.0,
    }
    voxels = np.zeros((3, 6480), dtype=np.float32)
    for (shower, layer, alpha, r), energy in known.items():
        voxels[shower, layer * N_LAYER_VOXELS + alpha * 9 + r] = energy
    incident_mev = np.array([[1000.0], [250_000.0], [1_000_000.0]])
    path = write_file(tmp_path / "ds2.h5", voxels, incident_mev)

    showers = read_calochallenge(path, read_binning(write_binning(tmp_path / "b.xml", DS2)))
    assert showers.geometry == DS2 and len(showers) == 3 and showers.max_hits == 4
    np.testing.assert_array_equal(showers.incident_energy, np.float32([1.0, 250.0, 1000.0]))
    found = {}
    for i in range(3):
        for x, y, z, energy in showers.hits[i][showers.mask[i]]:
            found[(i, int(z), int(x), int(y))] = float(energy)
    assert found == known
    np.testing.assert_array_equal(showers.n_hits, [4, 1, 2])
    np.testing.assert_allclose(showers.energy.sum(axis=1), voxels.sum(axis=1), rtol=1e-6)
    # hits come in voxel order (α 0 r 8 is voxel 8 of its layer, α 15 r 0 voxel 135), padding after them
    np.testing.assert_array_equal(showers.hits[2], [[0, 8, 22, 4.0], [15, 0, 22, 0.125], [0, 0, 0, 0], [0, 0, 0, 0]])

    # the radius of each hit is the one the challenge's HighLevelFeatures gives its voxel:
    # radial_center_mult = num_alpha * [r centres], indexed by the voxel's position within its layer
    centres = [(DS2_EDGES[i] + DS2_EDGES[i + 1]) * 0.5 for i in range(9)]
    radial_center_mult = np.array(16 * centres)
    rows, slots = np.nonzero(showers.mask)
    x, y, z = showers.x[rows, slots], showers.y[rows, slots], showers.z[rows, slots]
    within_layer = x.astype(int) * 9 + y.astype(int)
    np.testing.assert_allclose(np.hypot(*DS2.transverse_mm(x, y)), radial_center_mult[within_layer])
    np.testing.assert_array_equal(
        voxels[rows, z.astype(int) * N_LAYER_VOXELS + within_layer], showers.energy[rows, slots]
    )


def test_round_trip_and_chunks(tmp_path):
    voxels, incident = random_voxels(23, seed=1)
    path = write_file(tmp_path / "in.h5", voxels.astype(np.float64), incident)  # float64, as some files have
    showers = read_calochallenge(path, DS2)
    assert len(showers) == 23
    np.testing.assert_array_equal(showers.n_hits, (voxels > 0).sum(axis=1))
    np.testing.assert_allclose(showers.energy.sum(axis=1), voxels.sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(showers.incident_energy, incident[:, 0] / 1000, rtol=1e-7)

    out = write_calochallenge(tmp_path / "out.h5", showers, provenance={"generator": "test"})
    with h5py.File(out) as f:  # what the challenge's evaluate.py reads
        assert f["showers"].shape == (23, 6480) and f["incident_energies"].shape == (23, 1)
        np.testing.assert_array_equal(f["showers"][:], voxels)
        np.testing.assert_allclose(f["incident_energies"][:], incident, rtol=1e-7)
        assert f.attrs["generator"] == "test" and f.attrs["schema"] == "calochallenge-2022"
    assert not list(tmp_path.glob("*.tmp"))
    assert_same(read_calochallenge(out, DS2), showers)
    assert read_calochallenge(out, DS2).max_hits == showers.max_hits == int((voxels > 0).sum(axis=1).max())
    assert_same(read_calochallenge(out, DS2, start=5, stop=9), showers[5:9])
    with pytest.raises(IndexError, match="outside the file's 23 showers"):
        read_calochallenge(out, DS2, start=20, stop=24)

    chunks = list(iter_calochallenge(path, DS2, chunk_size=5))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
    assert [c.max_hits for c in chunks] == [int((voxels[i : i + 5] > 0).sum(axis=1).max()) for i in range(0, 23, 5)]
    assert_same(concatenate_showers(chunks), showers)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        iter_calochallenge(path, DS2, chunk_size=0)


def test_wrong_binning_rejected_naming_both_sizes(tmp_path):
    voxels, incident = random_voxels(4)
    path = write_file(tmp_path / "ds2.h5", voxels, incident)
    ds3 = read_binning(write_binning(tmp_path / "binning_dataset_3.xml", DS3))
    message = r"has 6480 voxels per shower, but geometry 'calochallenge_electron_45x50x18' has 40500 = 45 layers × 50"
    with pytest.raises(BadDataError, match=message + r".*the binning file does not match"):
        read_calochallenge(path, ds3)
    with pytest.raises(BadDataError, match="6480 voxels per shower"):  # at the call, not at the first batch
        iter_calochallenge(path, ds3)
    with pytest.raises(ValueError, match="needs a cylindrical geometry"):
        read_calochallenge(path, ILD_ECAL)


def test_bad_files_rejected_clearly(tmp_path):
    voxels, incident = random_voxels(6)
    for key in ("incident_energies", "showers"):
        path = write_file(tmp_path / f"no_{key}.h5", voxels, incident, skip=(key,))
        with pytest.raises(SchemaError, match=f"(?s)not found: '{key}'.*in file {path}"):
            read_calochallenge(path, DS2)
    path = write_file(tmp_path / "short.h5", voxels, incident[:5])
    with pytest.raises(BadDataError, match=r"/incident_energies has shape \(5, 1\), expected \(6, 1\).*6 showers"):
        read_calochallenge(path, DS2)
    path = write_file(tmp_path / "flat.h5", voxels.reshape(6, 45, 144), incident)
    with pytest.raises(BadDataError, match=r"/showers has shape \(6, 45, 144\), expected \(N, n_voxels\)"):
        read_calochallenge(path, DS2)

    nan = voxels.copy()
    nan[2, 100] = np.nan
    path = write_file(tmp_path / "nan.h5", nan, incident)
    with pytest.raises(BadDataError, match=r"1 non-finite \(NaN/inf\) voxel energies .*shower 2, in .*nan\.h5"):
        read_calochallenge(path, DS2)
    with pytest.raises(BadDataError, match=r"shower 2, in .*\(showers 0:3\)"):
        list(iter_calochallenge(path, DS2, chunk_size=3))
    negative = voxels.copy()
    negative[4, 7] = -1.0
    with pytest.raises(BadDataError, match="1 negative voxel energies .*shower 4"):
        read_calochallenge(write_file(tmp_path / "neg.h5", negative, incident), DS2)
    bad_incident = incident.copy()
    bad_incident[3] = np.nan
    with pytest.raises(BadDataError, match="non-finite .*incident energies .*shower 3"):
        read_calochallenge(write_file(tmp_path / "nan_e.h5", voxels, bad_incident), DS2)

    with pytest.raises(FileNotFoundError, match="CaloChallenge file not found"):
        read_calochallenge(tmp_path / "missing.h5", DS2)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(BadDataError, match="not an HDF5 file"):
        read_calochallenge(tmp_path / "text.h5", DS2)


def test_showers_without_hits_dropped_and_reported(tmp_path):
    voxels, incident = random_voxels(8, seed=3, empty=(2, 5, 6))
    path = write_file(tmp_path / "empty.h5", voxels, incident)
    with pytest.warns(EmptyShowersWarning, match=r"dropped 3 shower\(s\) without any voxel > 0 \(rows 2, 5, 6\)") as w:
        showers = read_calochallenge(path, DS2)
    np.testing.assert_array_equal(w[0].message.indices, [2, 5, 6])
    kept = [0, 1, 3, 4, 7]
    assert len(showers) == 5
    np.testing.assert_allclose(showers.incident_energy, incident[kept, 0] / 1000, rtol=1e-7)
    np.testing.assert_array_equal(showers.n_hits, (voxels[kept] > 0).sum(axis=1))

    with pytest.warns(EmptyShowersWarning) as w:
        chunks = list(iter_calochallenge(path, DS2, chunk_size=3))
    assert [list(x.message.indices) for x in w] == [[2], [5], [6]]  # one warning per chunk, rows in the file
    assert_same(concatenate_showers(chunks), showers)

    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptyShowersWarning)  # the strict choice: refuse such a file
        with pytest.raises(EmptyShowersWarning, match="rows 2, 5, 6"):
            read_calochallenge(path, DS2)


def test_write_refuses_what_the_challenge_cannot_evaluate(tmp_path):
    showers = read_calochallenge(write_file(tmp_path / "in.h5", *random_voxels(4)), DS2)
    ild = Showers(np.array([[[1, 2, 3, 1.0]]], dtype=np.float32), np.float32([10.0]), ILD_ECAL)
    with pytest.raises(ValueError, match="needs a cylindrical geometry.*'ild_ecal' is cartesian"):
        write_calochallenge(tmp_path / "ild.h5", ild)
    unknown = Showers(showers.hits, np.float32([10, 0, 20, 30]), DS2)
    with pytest.raises(BadDataError, match=r"1 shower\(s\) \(first: shower 1\) have incident energy 0"):
        write_calochallenge(tmp_path / "unknown.h5", unknown)
    between = showers.hits.copy()
    between[0, 0, 0] += 0.5
    with pytest.raises(BadDataError, match="not whole cell indices"):
        write_calochallenge(tmp_path / "between.h5", Showers(between, showers.incident_energy, DS2))
    outside = showers.hits.copy()
    outside[0, 0, 0] = 16  # α bin 16 of 16
    with pytest.raises(BadDataError, match="outside the 16 × 9 × 45 grid"):
        write_calochallenge(tmp_path / "outside.h5", Showers(outside, showers.incident_energy, DS2))
    other = dataclasses.replace(DS2, name="other")
    mismatch = pytest.raises(ValueError, match="showers of geometry 'other' appended to .*a file of geometry")
    with mismatch, CaloChallengeWriter(tmp_path / "mixed.h5", DS2) as writer:
        writer.append(showers)
        writer.append(Showers(showers.hits, showers.incident_energy, other))
    for name in ("unknown", "between", "outside", "mixed"):
        assert not (tmp_path / f"{name}.h5").exists()
    assert not list(tmp_path.glob("*.tmp"))
