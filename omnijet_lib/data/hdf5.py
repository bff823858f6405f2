"""What every HDF5 file of the project shares: opening one with a clear error, and writing one atomically.

:class:`HDF5Writer` is the one writer behind the jet and the shower files: it
writes ``<name>.<pid>.tmp``, stores the schema, the creation time and the
caller's provenance as attributes, and renames the file when complete, so a file
with the final name is never half-written.  A file format subclasses it with its
datasets (``_create``), how a batch is appended (``append``) and the attributes
known only at the end (``_final_attrs``).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np

from omnijet_lib.atomic import temporary_path
from omnijet_lib.errors import BadDataError


def open_hdf5(path: str | os.PathLike, *, what: str) -> h5py.File:
    """Open an HDF5 file for reading; a missing or non-HDF5 file is an error naming ``what`` and the path."""
    path = Path(path)
    if not path.exists():
        msg = f"{what} not found: {path}"
        raise FileNotFoundError(msg)
    try:
        return h5py.File(path, "r")
    except OSError as err:
        msg = f"not an HDF5 file (or unreadable): {path}: {err}"
        raise BadDataError(msg) from err


def decode_attr(value):
    """An HDF5 attribute as Python: bytes to str, JSON text (dicts, lists) parsed, numpy scalars and arrays unwrapped."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class HDF5Writer:
    """A new HDF5 file that appears complete or not at all; a context manager.

    Leaving the block normally renames ``<path>.<pid>.tmp`` to ``path``; an
    exception removes the temporary file.  ``schema`` and ``schema_version`` name
    the format; ``attrs`` are the format's own attributes, ``provenance`` the
    caller's (it may not overwrite ``reserved`` ones).
    """

    reserved: tuple[str, ...] = ("schema", "schema_version", "created")

    def __init__(
        self, path: str | os.PathLike, *, schema: str, schema_version: int, attrs: dict, provenance: dict | None
    ):
        clash = sorted(set(provenance or {}) & {*self.reserved, *attrs})
        if clash:
            msg = f"provenance may not set the attributes the file itself writes: {clash}"
            raise ValueError(msg)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_path = temporary_path(self.path)
        self._file = h5py.File(self.tmp_path, "w")
        self._open = True
        created = datetime.now(UTC).isoformat(timespec="seconds")
        for key, value in {"schema": schema, "schema_version": schema_version, "created": created, **attrs}.items():
            self.set_attr(key, value)
        for key, value in (provenance or {}).items():
            self.set_attr(key, value)
        self._create(self._file)

    def _create(self, file: h5py.File) -> None:
        """Create the format's (empty, growable) datasets."""
        raise NotImplementedError

    def _final_attrs(self) -> dict:
        """Attributes known once everything is appended (e.g. counts)."""
        return {}

    def set_attr(self, key: str, value) -> None:
        """Store an attribute; dicts, lists and tuples are stored as JSON text."""
        self._file.attrs[key] = json.dumps(value) if isinstance(value, (dict, list, tuple)) else value

    def close(self) -> Path:
        if self._open:
            for key, value in self._final_attrs().items():
                self.set_attr(key, value)
            self._file.close()
            with open(self.tmp_path, "rb") as f:  # the data reaches the disk before the name does
                os.fsync(f.fileno())
            os.replace(self.tmp_path, self.path)
            self._open = False
        return self.path

    def abort(self) -> None:
        if self._open:
            self._file.close()
            self.tmp_path.unlink(missing_ok=True)
            self._open = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def append_rows(dataset: h5py.Dataset, values) -> None:
    """Grow a 1-d dataset by ``values`` at its end."""
    start = dataset.shape[0]
    dataset.resize((start + len(values),))
    dataset[start:] = values
