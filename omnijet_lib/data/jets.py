"""The in-memory representation of jets shared by every data source.

A :class:`Jets` holds per-jet quantities as numpy arrays and the constituents
as a jagged awkward array of records (``pt``, ``eta``, ``phi``, ``charge``,
``pdg_id``), sorted by pT, descending.  Pythia-generated jets, JetClass jets and
jets decoded from tokens all end up here, so every analysis reads them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import awkward as ak
import numpy as np

from omnijet_lib.errors import BadDataError

# The JetClass classes in the order of its one-hot ``label_*`` branches; a jet's
# ``label`` is an index into this tuple whatever the source of the jet.
JETCLASS_LABELS = ("QCD", "Hbb", "Hcc", "Hgg", "H4q", "Hqql", "Zqq", "Wqq", "Tbqq", "Tbl")

JET_FIELDS = ("pt", "eta", "phi", "mass", "label")  # per jet; n_constituents is derived
CONSTITUENT_FIELDS = ("pt", "eta", "phi", "charge", "pdg_id")
FLOAT_CONSTITUENT_FIELDS = ("pt", "eta", "phi")
# Storage types, in memory and on disk: float32 keeps 7 digits, ample for GeV-scale momenta.
JET_DTYPES = {"pt": "f4", "eta": "f4", "phi": "f4", "mass": "f4", "label": "i1"}
CONSTITUENT_DTYPES = {"pt": "f4", "eta": "f4", "phi": "f4", "charge": "i1", "pdg_id": "i4"}


def label_index(name: str) -> int:
    """Index of a JetClass class name (``"Tbqq"`` or ``"label_Tbqq"``) in :data:`JETCLASS_LABELS`."""
    bare = name.removeprefix("label_")
    if bare not in JETCLASS_LABELS:
        msg = f"unknown jet class {name!r}; choose from {', '.join(JETCLASS_LABELS)}"
        raise KeyError(msg)
    return JETCLASS_LABELS.index(bare)


@dataclass(frozen=True)
class Jets:
    """A batch of jets, in physical units (GeV, radians)."""

    pt: np.ndarray  # (N,) jet transverse momentum [GeV]
    eta: np.ndarray  # (N,) jet pseudorapidity
    phi: np.ndarray  # (N,) jet azimuth in (-pi, pi]
    mass: np.ndarray  # (N,) jet invariant mass [GeV]
    label: np.ndarray  # (N,) index into JETCLASS_LABELS
    constituents: ak.Array  # (N, var) records of CONSTITUENT_FIELDS, pT-ordered

    def __post_init__(self) -> None:
        n = len(self.constituents)
        for field in JET_FIELDS:
            if len(getattr(self, field)) != n:
                msg = f"Jets.{field} has {len(getattr(self, field))} entries but there are {n} jets"
                raise ValueError(msg)

    def __len__(self) -> int:
        return len(self.constituents)

    def __getitem__(self, selection) -> Jets:
        """Select jets by slice, integer array or boolean mask."""
        if isinstance(selection, (int, np.integer)):
            selection = slice(selection, selection + 1 if selection != -1 else None)
        return Jets(
            **{f: getattr(self, f)[selection] for f in JET_FIELDS},
            constituents=self.constituents[selection],
        )

    @property
    def n_constituents(self) -> np.ndarray:
        """(N,) number of constituents of each jet."""
        return ak.to_numpy(ak.num(self.constituents, axis=1))

    @classmethod
    def from_flat(cls, *, n_constituents: np.ndarray, constituents: dict[str, np.ndarray], **jet_fields) -> Jets:
        """Build from per-jet arrays and flat constituent arrays cut by ``n_constituents``.

        Values are cast to the storage types (:data:`JET_DTYPES`, :data:`CONSTITUENT_DTYPES`);
        charges are rounded first, as some sources store them as floats.
        """
        constituents = dict(constituents, charge=np.rint(constituents["charge"]))
        flat = ak.zip({f: np.asarray(constituents[f], dtype=t) for f, t in CONSTITUENT_DTYPES.items()}, depth_limit=1)
        return cls(
            **{f: np.asarray(jet_fields[f], dtype=t) for f, t in JET_DTYPES.items()},
            constituents=ak.unflatten(flat, np.asarray(n_constituents, dtype=np.int64)),
        )

    def pt_ordered(self) -> Jets:
        """The same jets with each jet's constituents sorted by pT, descending."""
        order = ak.argsort(self.constituents.pt, axis=1, ascending=False)
        return replace(self, constituents=self.constituents[order])

    def flat_constituents(self) -> dict[str, np.ndarray]:
        """The constituent fields as flat numpy arrays, jet after jet."""
        return {f: ak.to_numpy(ak.flatten(self.constituents[f], axis=1)) for f in CONSTITUENT_FIELDS}


def concatenate(batches: list[Jets]) -> Jets:
    """Join batches of jets, in order."""
    if not batches:
        msg = "cannot concatenate an empty list of jet batches"
        raise ValueError(msg)
    return Jets(
        **{f: np.concatenate([getattr(b, f) for b in batches]) for f in JET_FIELDS},
        constituents=ak.concatenate([b.constituents for b in batches], axis=0),
    )


def check_jets(jets: Jets, *, source: str) -> None:
    """Raise :class:`BadDataError` naming ``source`` if the jets are not physical.

    NaN or infinite values anywhere, jets without constituents and constituents
    with pT <= 0 are refused: each would silently poison a histogram or a log.
    """
    for field in ("pt", "eta", "phi", "mass"):
        _check_finite(getattr(jets, field), f"jet {field}", source)
    flat = jets.flat_constituents()
    n = jets.n_constituents
    jet_of_constituent = np.repeat(np.arange(len(jets)), n)
    for field in FLOAT_CONSTITUENT_FIELDS:
        bad = ~np.isfinite(flat[field])
        if bad.any():
            msg = (
                f"{bad.sum()} non-finite (NaN/inf) constituent {field} values, first in jet "
                f"{jet_of_constituent[np.argmax(bad)]}, in {source}"
            )
            raise BadDataError(msg)
    if (flat["pt"] <= 0).any():
        first = jet_of_constituent[np.argmax(flat["pt"] <= 0)]
        msg = f"constituent with pT <= 0 in jet {first}, in {source}"
        raise BadDataError(msg)
    empty = np.flatnonzero(n == 0)
    if empty.size:
        msg = f"{empty.size} jet(s) without constituents (first: jet {empty[0]}) in {source}"
        raise BadDataError(msg)
    if len(jets.label) and (jets.label.min() < 0 or jets.label.max() >= len(JETCLASS_LABELS)):
        msg = f"jet labels outside 0..{len(JETCLASS_LABELS) - 1} in {source}"
        raise BadDataError(msg)


def _check_finite(values: np.ndarray, what: str, source: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        msg = f"{bad.sum()} non-finite (NaN/inf) {what} values, first in jet {np.argmax(bad)}, in {source}"
        raise BadDataError(msg)
