"""The project's HDF5 jet file: one schema for generated, imported and decoded jets.

Layout (documented for users in ``data/README.md``)::

    /jets/pt, eta, phi, mass     float32 (N,)   jet four-vector [GeV]
    /jets/n_constituents         int32   (N,)   multiplicity; offsets are its cumsum
    /jets/label                  int8    (N,)   index into attrs["label_names"]; -1: unlabelled (generated)
    /constituents/pt, eta, phi   float32 (M,)   all constituents, jet after jet, pT-ordered
    /constituents/charge         int8    (M,)
    /constituents/pdg_id         int32   (M,)
    attrs: schema, schema_version, label_names, and provenance (generator, settings, seed, created, ...)

Files are written to ``<name>.<pid>.tmp`` and renamed when complete, so a file with
the final name is never half-written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from omnijet_lib.data.hdf5 import HDF5Writer, append_rows, decode_attr, open_hdf5
from omnijet_lib.data.jets import (
    CONSTITUENT_DTYPES,
    CONSTITUENT_FIELDS,
    JET_DTYPES,
    JET_FIELDS,
    JETCLASS_LABELS,
    Jets,
    check_jets,
)
from omnijet_lib.errors import BadDataError, SchemaError, check_int

SCHEMA = "omnijet-jets"
SCHEMA_VERSION = 1
JET_DTYPES = {**JET_DTYPES, "n_constituents": "i4"}


class JetFileWriter(HDF5Writer):
    """Append batches of :class:`Jets` to a new jet file; the file appears complete or not at all.

    Use as a context manager: leaving the block normally renames ``<path>.<pid>.tmp``
    to ``path``; an exception removes the temporary file.
    """

    reserved = (*HDF5Writer.reserved, "n_jets")

    def __init__(self, path: str | os.PathLike, *, provenance: dict | None = None):
        self.n_jets = 0
        attrs = {"label_names": list(JETCLASS_LABELS)}
        super().__init__(path, schema=SCHEMA, schema_version=SCHEMA_VERSION, attrs=attrs, provenance=provenance)

    def _create(self, file: h5py.File) -> None:
        for group, dtypes in (("jets", JET_DTYPES), ("constituents", CONSTITUENT_DTYPES)):
            for name, dtype in dtypes.items():
                file.create_dataset(
                    f"{group}/{name}", shape=(0,), maxshape=(None,), dtype=dtype,
                    chunks=(65536,), compression="gzip", compression_opts=1, shuffle=True,
                )  # fmt: skip

    def append(self, jets: Jets) -> None:
        check_jets(jets, source=f"jets written to {self.path}")
        columns = {f"jets/{f}": getattr(jets, f) for f in JET_FIELDS}
        columns["jets/n_constituents"] = jets.n_constituents
        columns |= {f"constituents/{f}": v for f, v in jets.flat_constituents().items()}
        for key, values in columns.items():
            append_rows(self._file[key], values)
        self.n_jets += len(jets)

    def _final_attrs(self) -> dict:
        return {"n_jets": self.n_jets}


def write_jets(path: str | os.PathLike, jets: Jets, *, provenance: dict | None = None) -> Path:
    """Write jets to a new HDF5 file in the project's schema."""
    with JetFileWriter(path, provenance=provenance) as writer:
        writer.append(jets)
    return Path(path)


def open_jet_file(path: str | os.PathLike) -> h5py.File:
    """Open a jet file for reading and check its schema, with errors naming the file."""
    path = Path(path)
    file = open_hdf5(path, what="jet file")
    try:
        for group, fields in (("jets", JET_DTYPES), ("constituents", CONSTITUENT_DTYPES)):
            if group not in file or not isinstance(file[group], h5py.Group):
                raise SchemaError(group, file.keys(), file=str(path), obj="/")
            for field in fields:
                if field not in file[group]:
                    raise SchemaError(field, file[group].keys(), file=str(path), obj=f"/{group}")
        n_jets = file["jets/n_constituents"].shape[0]
        for field in JET_DTYPES:
            if file[f"jets/{field}"].shape != (n_jets,):
                msg = f"/jets/{field} has shape {file[f'jets/{field}'].shape}, expected ({n_jets},), in {path}"
                raise BadDataError(msg)
        counts = file["jets/n_constituents"]
        step = 1 << 22  # read the counts in pieces: a JetClass-sized file has 10^8 jets
        n_const = sum(int(counts[i : i + step].sum(dtype=np.int64)) for i in range(0, n_jets, step))
        for field in CONSTITUENT_DTYPES:
            if file[f"constituents/{field}"].shape != (n_const,):
                msg = (
                    f"/constituents/{field} has shape {file[f'constituents/{field}'].shape} but "
                    f"/jets/n_constituents sums to {n_const}, in {path}"
                )
                raise BadDataError(msg)
    except Exception:
        file.close()
        raise
    return file


# Attributes of generated files renamed for what they hold: wall-clock seconds of the workers, not CPU seconds.
RENAMED_ATTRS = {"cpu_seconds": "worker_seconds", "jets_per_cpu_second": "jets_per_worker_second"}


def jet_file_info(path: str | os.PathLike) -> dict:
    """Number of jets and the provenance attributes of a jet file (JSON attributes decoded).

    Files written before an attribute was renamed read under its new name.
    """
    with open_jet_file(path) as file:
        info = {key: decode_attr(value) for key, value in file.attrs.items()}
        info["n_jets"] = file["jets/n_constituents"].shape[0]
    for old, new in RENAMED_ATTRS.items():
        if old in info:
            info.setdefault(new, info.pop(old))
    return info


def read_jets(path: str | os.PathLike, *, start: int = 0, stop: int | None = None) -> Jets:
    """Read jets ``start:stop`` of a jet file (all by default)."""
    with open_jet_file(path) as file:
        start, stop = _clip(file, start, stop)
        counts = file["jets/n_constituents"][:stop].astype(np.int64)
        first = int(counts[:start].sum())
        return _read_range(file, path, start, counts[start:], first)


def iter_jets(path: str | os.PathLike, *, chunk_size: int = 100_000) -> Iterator[Jets]:
    """Stream a jet file in batches of at most ``chunk_size`` jets; memory stays bounded."""
    check_int(chunk_size, "chunk_size", minimum=1)
    with open_jet_file(path) as file:
        n_jets = file["jets/n_constituents"].shape[0]
        first = 0  # index of the chunk's first constituent, carried along so no chunk reads all counts
        for start in range(0, n_jets, chunk_size):
            counts = file["jets/n_constituents"][start : start + chunk_size].astype(np.int64)
            yield _read_range(file, path, start, counts, first)
            first += int(counts.sum())


def _clip(file: h5py.File, start: int, stop: int | None) -> tuple[int, int]:
    n_jets = file["jets/n_constituents"].shape[0]
    stop = n_jets if stop is None else stop
    if not 0 <= start <= stop <= n_jets:
        msg = f"jet range {start}:{stop} outside the file's {n_jets} jets, in {file.filename}"
        raise IndexError(msg)
    return start, stop


def _read_range(file: h5py.File, path, start: int, counts: np.ndarray, first: int) -> Jets:
    """Jets ``start : start + len(counts)``, whose constituents begin at index ``first``."""
    stop = start + len(counts)
    lo, hi = first, first + int(counts.sum())
    jets = Jets.from_flat(
        n_constituents=counts,
        constituents={f: file[f"constituents/{f}"][lo:hi] for f in CONSTITUENT_FIELDS},
        **{f: file[f"jets/{f}"][start:stop] for f in JET_FIELDS},
    )
    check_jets(jets, source=f"{path} (jets {start}:{stop})")
    return jets
