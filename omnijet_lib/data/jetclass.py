"""Reader for JetClass ROOT files (Qu et al.; schema in docs/jets.md), streaming with uproot.

JetClass has 10^8 jets: files are read in chunks of ``step_size`` entries and
never whole, so memory stays bounded whatever their size.  Constituent pT, eta
and phi come from the four-momentum branches; ``pdg_id`` is inferred from the
particle-ID flags (+-211, 130, 22, -+11, -+13, the sign from the charge), as
JetClass stores no PDG id.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import awkward as ak
import numpy as np
import uproot
from tqdm.auto import tqdm

from omnijet_lib.data.jet_files import JetFileWriter
from omnijet_lib.data.jets import JETCLASS_LABELS, Jets, concatenate, label_index
from omnijet_lib.errors import BadDataError, SchemaError, check_int
from omnijet_lib.observables import pt_eta_phi_mass

TREE = "tree"
PARTICLE_BRANCHES = (
    "part_px", "part_py", "part_pz", "part_energy", "part_charge",
    "part_isChargedHadron", "part_isNeutralHadron", "part_isPhoton", "part_isElectron", "part_isMuon",
)  # fmt: skip
JET_BRANCHES = ("jet_pt", "jet_eta", "jet_phi", "jet_energy")
LABEL_BRANCHES = tuple(f"label_{name}" for name in JETCLASS_LABELS)


def expand_paths(patterns: str | os.PathLike | Iterable[str | os.PathLike], *, what: str = "JetClass") -> list[Path]:
    """Files matching glob patterns, in sorted order; a pattern matching nothing is an error naming ``what``."""
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.fspath(pattern)))
        if not matches:
            msg = f"no {what} file matches {os.fspath(pattern)!r}"
            raise FileNotFoundError(msg)
        paths.extend(Path(m) for m in matches)
    return paths


def iter_jetclass(
    patterns,
    *,
    classes: Iterable[str] | None = None,
    max_jets: int | None = None,
    step_size: int = 100_000,
    progress: bool = False,
) -> Iterator[Jets]:
    """Stream jets of the chosen ``classes`` (e.g. ``["Tbqq", "QCD"]``; all by default).

    Yields batches of at most ``step_size`` entries' worth of jets and stops after
    ``max_jets`` jets in total.  Bad arguments and missing files are errors at the
    call, not at the first batch.
    """
    check_read_limits(max_jets, step_size)
    paths = expand_paths(patterns)
    wanted = np.array(sorted({label_index(c) for c in classes}) if classes else range(len(JETCLASS_LABELS)))
    return _iter_jetclass(paths, wanted, max_jets, step_size, progress)


def _iter_jetclass(paths: list[Path], wanted: np.ndarray, max_jets, step_size: int, progress: bool) -> Iterator[Jets]:
    n_yielded = 0
    bar = tqdm(total=max_jets, desc="JetClass jets", unit="jet", disable=not progress)
    for path in paths:
        _check_schema(path)
        with uproot.open(path) as file:
            tree = file[TREE]
            branches = [*PARTICLE_BRANCHES, *JET_BRANCHES, *(b for b in LABEL_BRANCHES if b in tree)]
            for arrays in tree.iterate(branches, step_size=step_size):
                jets = _to_jets(arrays, source=str(path))
                jets = jets[np.isin(jets.label, wanted)]
                if max_jets is not None:
                    jets = jets[: max_jets - n_yielded]
                if len(jets):
                    n_yielded += len(jets)
                    bar.update(len(jets))
                    yield jets
                if max_jets is not None and n_yielded >= max_jets:
                    bar.close()
                    return
    bar.close()


def read_jetclass(patterns, *, classes=None, max_jets: int | None = None, step_size: int = 100_000) -> Jets:
    """Read JetClass jets into memory; use ``max_jets`` (or :func:`iter_jetclass`) for large files."""
    batches = list(iter_jetclass(patterns, classes=classes, max_jets=max_jets, step_size=step_size))
    if not batches:
        msg = f"no jets of classes {classes} in {patterns}"
        raise BadDataError(msg)
    return concatenate(batches)


def import_jetclass(
    patterns, out: str | os.PathLike, *, classes=None, max_jets: int | None = None, step_size: int = 100_000
) -> Path:
    """Convert JetClass ROOT files to the project's HDF5 schema, chunk by chunk."""
    check_read_limits(max_jets, step_size)  # before the output file is begun
    paths = expand_paths(patterns)
    provenance = {
        "generator": "JetClass (MadGraph5_aMC@NLO + Pythia 8 + Delphes CMS card)",
        "source_files": [os.fspath(p) for p in paths],
        "classes": list(classes) if classes else list(JETCLASS_LABELS),
        "max_jets": -1 if max_jets is None else max_jets,
        "pdg_id": "inferred from JetClass particle-ID flags",
    }
    with JetFileWriter(out, provenance=provenance) as writer:
        for jets in iter_jetclass(paths, classes=classes, max_jets=max_jets, step_size=step_size, progress=True):
            writer.append(jets)
        if writer.n_jets == 0:
            msg = f"no jets of classes {provenance['classes']} in {', '.join(provenance['source_files'])}"
            raise BadDataError(msg)
    return Path(out)


def check_read_limits(max_jets: int | None, step_size: int) -> None:
    """Refuse a ``max_jets`` or ``step_size`` that is not a positive integer (None: every jet) before reading.

    A negative max_jets would slice jets off the end of each batch and 0 would read nothing;
    a step of 0 or less never advances.
    """
    if max_jets is not None:
        check_int(max_jets, "max_jets", minimum=1)
    check_int(step_size, "step_size", minimum=1)


def _check_schema(path: Path) -> None:
    try:
        file = uproot.open(path)
    except Exception as err:
        msg = f"not a ROOT file (or unreadable): {path}: {err}"
        raise BadDataError(msg) from err
    with file:
        if TREE not in file:
            raise SchemaError(TREE, [k.split(";")[0] for k in file.keys()], file=str(path), obj="/")
        keys = file[TREE].keys()
        for branch in (*PARTICLE_BRANCHES, *JET_BRANCHES):
            if branch not in keys:
                raise SchemaError(branch, keys, file=str(path), obj=f"/{TREE}")
        if not any(b in keys for b in LABEL_BRANCHES):
            raise SchemaError("label_*", keys, file=str(path), obj=f"/{TREE}")


def _to_jets(arrays: ak.Array, *, source: str) -> Jets:
    """One uproot chunk -> Jets: kinematics from four-momenta, labels from the one-hot branches."""
    counts = ak.to_numpy(ak.num(arrays["part_px"], axis=1))
    flat = {b: ak.to_numpy(ak.flatten(arrays[b])) for b in PARTICLE_BRANCHES}
    pt, eta, phi, _ = pt_eta_phi_mass(flat["part_px"], flat["part_py"], flat["part_pz"], flat["part_energy"])
    charge = np.rint(flat["part_charge"]).astype(np.int8)
    one_hot = np.stack(
        [ak.to_numpy(arrays[b]) if b in arrays.fields else np.zeros(len(arrays)) for b in LABEL_BRANCHES], axis=1
    )
    n_set = (one_hot > 0.5).sum(axis=1)
    if np.any(n_set != 1):
        bad = int(np.argmax(n_set != 1))
        msg = f"{np.sum(n_set != 1)} jets without exactly one label_* branch set (first: entry {bad}), in {source}"
        raise BadDataError(msg)

    jet_pt, jet_eta, jet_phi, jet_energy = (ak.to_numpy(arrays[b]).astype(np.float64) for b in JET_BRANCHES)
    p = jet_pt * np.cosh(jet_eta)
    mass = np.sqrt(np.clip(jet_energy**2 - p**2, 0.0, None))
    return Jets.from_flat(
        n_constituents=counts,
        constituents={
            "pt": pt,
            "eta": eta,
            "phi": phi,
            "charge": charge,
            "pdg_id": _pdg_id_from_flags(flat, charge),
        },
        pt=jet_pt,
        eta=jet_eta,
        phi=jet_phi,
        mass=mass,
        label=np.argmax(one_hot, axis=1),
    ).pt_ordered()


def _pdg_id_from_flags(flat: dict[str, np.ndarray], charge: np.ndarray) -> np.ndarray:
    sign = np.where(charge < 0, -1, 1)
    pdg = np.zeros(len(charge), dtype=np.int32)  # 0: no flag set (should not happen in JetClass)
    pdg[flat["part_isChargedHadron"] > 0.5] = (211 * sign)[flat["part_isChargedHadron"] > 0.5]
    pdg[flat["part_isNeutralHadron"] > 0.5] = 130
    pdg[flat["part_isPhoton"] > 0.5] = 22
    pdg[flat["part_isElectron"] > 0.5] = (-11 * sign)[flat["part_isElectron"] > 0.5]
    pdg[flat["part_isMuon"] > 0.5] = (-13 * sign)[flat["part_isMuon"] > 0.5]
    return pdg
