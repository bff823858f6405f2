"""Reader for Aspen Open Jets (AOJ) HDF5 files (layout in data/README.md, docs/jets.md), streaming with h5py.

Aspen Open Jets (Amram et al., arXiv:2412.10504) holds about 178 M anti-kT R = 0.8
(AK8) jets from the CMS 2016 Open Data (JetHT, eras 2016G and 2016H): pT > 300 GeV,
|eta| < 2.5, tight jet ID, events passing the jet triggers and the data-quality filters.
The files are written by ``H5_maker.py`` of the dataset's processing code.  Each file
holds one row per jet::

    /PFCands         float32 (N, 150, 11)  PF candidates: px, py, pz, E [GeV], d0, d0Err,
                                           dz, dzErr, charge, pdgId, puppiWeight; sorted by
                                           pT, descending; unused rows all zero (padding)
    /jet_kinematics  float32 (N, 4)        jet pt [GeV], eta, phi, msoftdrop [GeV]
    /jet_tagging     float32 (N, 13)       nConstituents, tau1..tau4, ParticleNet H4qvsQCD,
                                           HbbvsQCD, HccvsQCD, QCD, TvsQCD, WvsQCD, ZvsQCD, mass
    /event_info      int64   (N, 3)        run, luminosityBlock, event

All four are created with ``chunks=True`` and ``maxshape=(None, ...)`` (gzip except
``event_info``) and grown batch by batch.

Where the schema comes from: the index of public code holds the original repository,
``OzAmram/AOJProcessing``, only with its README (which names ``H5_maker.py``) and file
lists; the script itself was read in the fork ``zichunhao/AOJProcessing``, file
``H5_maker.py`` (commit 83d4de2), class ``Outputer`` (``reset``, ``fill_jet``,
``write_out``).  Its ``Outputer`` is the same as that of ``OzAmram/FOEProcessing``,
``H5_maker_FOE.py``, by the author of AOJ (there with 500 candidate rows and without
the jet datasets).  Two independent AOJ loaders read the same column order
(``dfaroughy/Multimodal-Bridges``, ``multimodal_bridges/datamodules/particle_clouds/aoj.py``:
px, py, pz, E in columns 0-3, pdgId in column -2, a candidate is real where E > 0).

What the processing code does, and so what a file holds:

* A jet's candidates are the first 150 of its PF candidates, cut *before* they are
  sorted by pT: a jet that had more keeps 150, not necessarily the hardest.  A jet
  filling every row may have lost candidates; the reader keeps what is stored and says
  so once per file with a :class:`CappedJetsWarning` (rows in ``.indices``).
* Candidates are stored unweighted; the PUPPI weight is column ``puppiWeight``.
* Padding is an all-zero row.  The reader drops padding rows (they never become
  zero-pT constituents) and refuses, naming the file and the jet, any other row that
  is not a physical candidate (pT <= 0 or E <= 0), as well as NaN or infinite values in
  the columns it reads.

Conversion to :class:`~omnijet_lib.data.jets.Jets` (as the JetClass reader does it):
constituent pT, eta, phi (absolute, not relative to the jet) from (px, py, pz, E);
charge and pdg_id as stored (CMS PF candidate ids: +-211, 130, 22, +-11, +-13, and 1,
2 for hadronic and electromagnetic candidates of the forward calorimeter, which are
kept); jet pT, eta, phi from ``/jet_kinematics``; the jet mass is the invariant mass
of the sum of the stored candidates' four-momenta (unweighted), since
``msoftdrop`` is a groomed mass and :class:`Jets` holds the jet's invariant mass.
``jet_tagging`` and ``event_info`` are not read (and not required).  AOJ is real
data without a truth label (mostly QCD jets, with some W, Z, top, ...): jets get the
label :data:`~omnijet_lib.data.jets.UNLABELLED` (-1) unless ``label`` names a class,
e.g. ``label="QCD"`` to use them as a QCD-like background at one's own judgement.
The :class:`Jets` container has no maximum multiplicity, so no constituent is
dropped here; the tokenizer's pre-processing cuts at its ``max_constituents`` later
and counts what it drops (``n_dropped`` of the token files).

A jet without any candidate cannot be a jet of the project (``check_jets`` refuses
it); the processing code cannot write one, but should a file hold one, it is dropped
with an :class:`EmptyJetsWarning` naming the file and the rows (make it an error with
``warnings.simplefilter("error", EmptyJetsWarning)``).

Not verified (no real AOJ file could be opened here, and the original ``H5_maker.py``
is not in the index): that the published files (fdr.uni-hamburg.de, record 16505)
were written by exactly this version of the script, or merged afterwards without
changing the datasets; that every published file has all four datasets; the meaning
``msoftdrop = -1`` for jets without a soft-drop mass (stated by the fork's
``DATASET.md`` only; unused here); that ``nConstituents`` counts the same candidates
as ``PFCands`` (unused); the units of d0 and dz (unused).  The fork's ``DATASET.md``
also describes a re-processed derivative with 16 columns per candidate (pt, eta, phi,
E, deta, ...); that is not the published layout and is refused.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from omnijet_lib.data.hdf5 import open_hdf5
from omnijet_lib.data.jet_files import JetFileWriter
from omnijet_lib.data.jetclass import check_read_limits, expand_paths
from omnijet_lib.data.jets import UNLABELLED, Jets, check_jets, concatenate, label_index
from omnijet_lib.errors import BadDataError, SchemaError
from omnijet_lib.observables import pt_eta_phi_mass, wrap_phi

PFCANDS = "PFCands"
JET_KINEMATICS = "jet_kinematics"
JET_TAGGING = "jet_tagging"  # not read
EVENT_INFO = "event_info"  # not read
PFCAND_FEATURES = ("px", "py", "pz", "E", "d0", "d0Err", "dz", "dzErr", "charge", "pdgId", "puppiWeight")
JET_KINEMATICS_FEATURES = ("pt", "eta", "phi", "msoftdrop")
JET_TAGGING_FEATURES = (
    "nConstituents", "tau1", "tau2", "tau3", "tau4", "particleNet_H4qvsQCD", "particleNet_HbbvsQCD",
    "particleNet_HccvsQCD", "particleNet_QCD", "particleNet_TvsQCD", "particleNet_WvsQCD", "particleNet_ZvsQCD",
    "particleNet_mass",
)  # fmt: skip
EVENT_INFO_FEATURES = ("run", "luminosityBlock", "event")
MAX_PFCANDS = 150  # rows per jet in the published files (the reader takes any number)
_USED = [PFCAND_FEATURES.index(f) for f in ("px", "py", "pz", "E", "charge", "pdgId")]
_READ_ROWS = 4096  # jets per h5py read within a step: 4096 x 150 x 11 float32 = 27 MB
WHAT = "Aspen Open Jets file"


class EmptyJetsWarning(UserWarning):
    """Jets without any PF candidate were dropped while reading ``path``; ``indices`` are their rows in the file."""

    def __init__(self, path, indices: np.ndarray):
        self.path, self.indices = Path(path), np.asarray(indices)
        super().__init__(
            f"dropped {len(self.indices)} jet(s) without any PF candidate (rows {_first(self.indices)}) in "
            f"{self.path}: a jet of the project needs at least one constituent"
        )


class CappedJetsWarning(UserWarning):
    """Jets of ``path`` fill every one of the ``width`` PFCands rows; ``indices`` are their rows in the file."""

    def __init__(self, path, indices: np.ndarray, width: int):
        self.path, self.indices, self.width = Path(path), np.asarray(indices), width
        super().__init__(
            f"{len(self.indices)} jet(s) fill all {width} PFCands rows (rows {_first(self.indices)}) in {self.path}: "
            f"the AOJ processing code keeps at most {width} candidates per jet, cut before sorting by pT, so these "
            "jets may lack candidates (kept as stored)"
        )


def _first(indices: np.ndarray) -> str:
    return ", ".join(str(i) for i in indices[:5]) + (", ..." if len(indices) > 5 else "")


def iter_aspen_open_jets(
    patterns,
    *,
    max_jets: int | None = None,
    step_size: int = 100_000,
    progress: bool = True,
    label: str | None = None,
) -> Iterator[Jets]:
    """Stream AOJ jets file after file, in batches of at most ``step_size`` jets, stopping after ``max_jets``.

    Only ``step_size`` rows of a file are in memory at a time (read in pieces of a
    few thousand).  Bad arguments, missing files and files not in the AOJ layout are
    errors at the call, not at the first batch.  ``label``: a JetClass class name
    for every jet, or ``None`` for unlabelled (-1).
    """
    check_read_limits(max_jets, step_size)
    label_value = UNLABELLED if label is None else label_index(label)
    paths = expand_paths(patterns, what="Aspen Open Jets")
    shapes = [_check_schema(path) for path in paths]
    return _iter_aspen_open_jets(paths, shapes, max_jets, step_size, progress, label_value)


def _iter_aspen_open_jets(paths, shapes, max_jets, step_size, progress, label_value) -> Iterator[Jets]:
    n_rows_total = sum(n for n, _ in shapes)
    bar = tqdm(
        total=n_rows_total if max_jets is None else min(max_jets, n_rows_total),
        desc="Aspen Open Jets", unit="jet", disable=not progress,
    )  # fmt: skip
    n_yielded = 0
    try:
        for path, (n_rows, width) in zip(paths, shapes):
            capped: list[np.ndarray] = []
            with open_hdf5(path, what=WHAT) as file:
                start = 0
                while start < n_rows and (max_jets is None or n_yielded < max_jets):
                    stop = min(n_rows, start + step_size)
                    if max_jets is not None:  # read no row beyond what is asked for
                        stop = min(stop, start + max_jets - n_yielded)
                    jets, full = _read_rows(file, path, start, stop, label_value)
                    capped.append(full)
                    start = stop
                    if len(jets):
                        n_yielded += len(jets)
                        bar.update(len(jets))
                        yield jets
            if capped and sum(len(c) for c in capped):
                warnings.warn(CappedJetsWarning(path, np.concatenate(capped), width), stacklevel=2)
            if max_jets is not None and n_yielded >= max_jets:
                return
    finally:
        bar.close()


def read_aspen_open_jets(
    patterns, *, max_jets: int | None = None, step_size: int = 100_000, progress: bool = False, label=None
) -> Jets:
    """Read AOJ jets into memory; use ``max_jets`` (or :func:`iter_aspen_open_jets`) for large files."""
    batches = list(
        iter_aspen_open_jets(patterns, max_jets=max_jets, step_size=step_size, progress=progress, label=label)
    )
    if not batches:
        msg = f"no jets in {patterns}"
        raise BadDataError(msg)
    return concatenate(batches)


def import_aspen_open_jets(
    patterns,
    out: str | os.PathLike,
    *,
    max_jets: int | None = None,
    step_size: int = 100_000,
    progress: bool = True,
    label: str | None = None,
) -> Path:
    """Convert AOJ files to the project's HDF5 jet schema, chunk by chunk; the file appears complete or not at all."""
    check_read_limits(max_jets, step_size)  # before the output file is begun
    paths = expand_paths(patterns, what="Aspen Open Jets")
    batches = iter_aspen_open_jets(paths, max_jets=max_jets, step_size=step_size, progress=progress, label=label)
    provenance = {
        "generator": "CMS 2016 Open Data (JetHT 2016G, 2016H), reconstructed; Aspen Open Jets (arXiv:2412.10504)",
        "domain": "aspen_open_jets",
        "source_files": [os.fspath(p) for p in paths],
        "max_jets": -1 if max_jets is None else max_jets,
        "label": "unlabelled" if label is None else label,
        "jet_kinematics": "pt, eta, phi from /jet_kinematics; mass of the summed stored PF candidates (unweighted)",
        "pdg_id": "as stored in /PFCands (CMS PF candidate pdgId)",
    }
    with JetFileWriter(out, provenance=provenance) as writer:
        for jets in batches:
            writer.append(jets)
        if writer.n_jets == 0:
            msg = f"no jets in {', '.join(provenance['source_files'])}"
            raise BadDataError(msg)
    return Path(out)


def _check_schema(path: Path) -> tuple[int, int]:
    """(number of jets, PFCands rows per jet) of a file in the AOJ layout, or an error naming the file."""
    with open_hdf5(path, what=WHAT) as file:
        for name in (PFCANDS, JET_KINEMATICS):
            if name not in file or not isinstance(file[name], h5py.Dataset):
                raise SchemaError(name, file.keys(), file=str(path), obj="/")
        cands, kinematics = file[PFCANDS], file[JET_KINEMATICS]
        for dataset, features in ((cands, PFCAND_FEATURES), (kinematics, JET_KINEMATICS_FEATURES)):
            ndim = 3 if dataset is cands else 2
            if dataset.ndim != ndim or dataset.shape[-1] != len(features):
                expected = "(n_jets, n_rows, " if ndim == 3 else "(n_jets, "
                msg = (
                    f"/{dataset.name.lstrip('/')} has shape {dataset.shape}, expected {expected}{len(features)}) "
                    f"with the features {', '.join(features)}, in {path}"
                )
                columns = dataset.attrs.get("columns")
                if columns is not None:  # e.g. the 16-column re-processed derivative
                    msg += f" (the file's own 'columns' attribute says: {_text(columns)}; not the AOJ layout)"
                raise BadDataError(msg)
            if not np.issubdtype(dataset.dtype, np.number):
                msg = f"/{dataset.name.lstrip('/')} has dtype {dataset.dtype}, expected float32, in {path}"
                raise BadDataError(msg)
        if cands.shape[0] != kinematics.shape[0]:
            msg = f"/{PFCANDS} has {cands.shape[0]} jets but /{JET_KINEMATICS} has {kinematics.shape[0]}, in {path}"
            raise BadDataError(msg)
        return int(cands.shape[0]), int(cands.shape[1])


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_rows(file: h5py.File, path: Path, start: int, stop: int, label: int) -> tuple[Jets, np.ndarray]:
    """Jets of rows ``start:stop`` (empty ones dropped) and the rows whose PFCands are full."""
    width = file[PFCANDS].shape[1]
    counts_parts, flat_parts = [], []
    for lo in range(start, stop, _READ_ROWS):
        block = np.asarray(file[PFCANDS][lo : min(stop, lo + _READ_ROWS)])  # (n, width, 11)
        real = np.any(block != 0, axis=2)  # padding: an all-zero row (NaN != 0, so NaN rows are checked below)
        used = block[real][:, _USED].astype(np.float64)  # jet after jet, row after row
        bad = ~np.isfinite(used).all(axis=1)
        if bad.any():
            jet = lo + int(np.repeat(np.arange(len(block)), real.sum(axis=1))[np.argmax(bad)])
            msg = (
                f"{int(bad.sum())} PF candidate(s) with non-finite (NaN/inf) px, py, pz, E, charge or pdgId in "
                f"/{PFCANDS}, first in jet (row) {jet}, in {path}"
            )
            raise BadDataError(msg)
        counts_parts.append(real.sum(axis=1))
        flat_parts.append(used)
    counts = np.concatenate(counts_parts).astype(np.int64)
    px, py, pz, energy, charge, pdg_id = np.concatenate(flat_parts).T

    kinematics = np.asarray(file[JET_KINEMATICS][start:stop], dtype=np.float64)[:, :3]  # msoftdrop unused
    bad_jets = ~np.isfinite(kinematics).all(axis=1)
    if bad_jets.any():
        msg = (
            f"{int(bad_jets.sum())} jet(s) with non-finite (NaN/inf) pt, eta or phi in /{JET_KINEMATICS}, "
            f"first in jet (row) {start + int(np.argmax(bad_jets))}, in {path}"
        )
        raise BadDataError(msg)

    jet_of = np.repeat(np.arange(len(counts)), counts)
    pt, eta, phi, _ = pt_eta_phi_mass(px, py, pz, energy)
    unphysical = (pt <= 0) | (energy <= 0)
    if unphysical.any():
        msg = (
            f"{int(unphysical.sum())} /{PFCANDS} row(s) neither padding (all zero) nor a physical candidate "
            f"(pT > 0, E > 0), first in jet (row) {start + int(jet_of[np.argmax(unphysical)])}, in {path}"
        )
        raise BadDataError(msg)

    empty = np.flatnonzero(counts == 0)
    if empty.size:
        warnings.warn(EmptyJetsWarning(path, start + empty), stacklevel=3)
    sums = [np.bincount(jet_of, weights=x, minlength=len(counts)) for x in (px, py, pz, energy)]
    mass = np.sqrt(np.clip(sums[3] ** 2 - sums[0] ** 2 - sums[1] ** 2 - sums[2] ** 2, 0.0, None))
    jets = Jets.from_flat(
        n_constituents=counts,
        constituents={"pt": pt, "eta": eta, "phi": phi, "charge": charge, "pdg_id": np.rint(pdg_id)},
        pt=kinematics[:, 0],
        eta=kinematics[:, 1],
        phi=wrap_phi(kinematics[:, 2]),
        mass=mass,
        label=np.full(len(counts), label),
    )
    jets = jets[counts > 0].pt_ordered()
    check_jets(jets, source=f"{path} (rows {start}:{stop})")
    return jets, start + np.flatnonzero(counts == width)
