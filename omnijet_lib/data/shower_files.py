"""HDF5 shower files in the two layouts the field uses, read and written in chunks.

Layouts (documented for users in ``data/README.md``)::

    reference (OmniJet-α_C):
        /showers   float32 (N, max_hits, 4)   x, y, z cell indices and E [MeV] per hit; E = 0 pads
        /energy    float32 (N, 1)             incident photon energy [GeV]; (N,) accepted on read
    caloclouds (CaloClouds, CaloClouds II):
        /events    float32 (N, 4, max_hits)   the same four features, hits on the last axis
        /energy    float32 (N, 1)
    attrs (files this module writes): schema, schema_version, layout, hit_features, units,
           geometry (the calorimeter, JSON: omnijet_lib.data.geometry), created, n_showers,
           max_hits, and provenance (generator, settings, seed, ...)

A file without a ``geometry`` attribute (OmniJet-α_C's and CaloClouds' own files) holds
showers of the ILD-like ECAL.

A reader recognises the layout by its dataset (``showers`` or ``events``), so files
written elsewhere read alike.  Files are written to ``<name>.<pid>.tmp`` and
renamed when complete, so a file with the final name is never half-written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import h5py
import numpy as np

from omnijet_lib.data.geometry import ILD_ECAL, CalorimeterGeometry
from omnijet_lib.data.hdf5 import HDF5Writer, decode_attr, open_hdf5
from omnijet_lib.data.showers import HIT_FEATURES, Showers, check_showers
from omnijet_lib.errors import BadDataError, SchemaError

SCHEMA = "omnijet-showers"
SCHEMA_VERSION = 1
LAYOUTS = {"reference": "showers", "caloclouds": "events"}  # layout -> name of its hit dataset
INCIDENT_ENERGY = "energy"  # dataset of the incident energies [GeV], in both layouts
UNITS = {"x": "cell", "y": "cell", "z": "layer", "energy": "MeV", "incident_energy": "GeV"}
_HITS_PER_CHUNK = 256  # HDF5 chunk length along the hit axis: a 1700-hit shower spans 7 chunks
_SHOWERS_PER_CHUNK = 64  # HDF5 chunk length along the shower axis (64 x 256 x 4 float32 = 256 kB)


class ShowerFileWriter(HDF5Writer):
    """Append batches of :class:`Showers` to a new file; the file appears complete or not at all.

    The hit axis grows with the widest batch appended (earlier showers are padded
    with zeros), so batches of any ``max_hits`` can be mixed.  Use as a context
    manager: leaving the block normally renames ``<path>.<pid>.tmp`` to ``path``;
    an exception removes the temporary file.
    """

    reserved = (*HDF5Writer.reserved, "layout", "hit_features", "units", "geometry", "n_showers", "max_hits")

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        layout: str = "reference",
        provenance: dict | None = None,
        geometry: CalorimeterGeometry = ILD_ECAL,
    ):
        if layout not in LAYOUTS:
            msg = f"unknown shower file layout {layout!r}; choose one of {sorted(LAYOUTS)}"
            raise ValueError(msg)
        self.layout, self.n_showers, self.max_hits, self.geometry = layout, 0, 0, geometry
        attrs = {"layout": layout, "hit_features": list(HIT_FEATURES), "units": UNITS, "geometry": geometry.to_dict()}
        super().__init__(path, schema=SCHEMA, schema_version=SCHEMA_VERSION, attrs=attrs, provenance=provenance)

    def _create(self, file: h5py.File) -> None:
        n_features = len(HIT_FEATURES)
        if self.layout == "reference":
            shape, maxshape = (0, 0, n_features), (None, None, n_features)
            chunks = (_SHOWERS_PER_CHUNK, _HITS_PER_CHUNK, n_features)
        else:
            shape, maxshape = (0, n_features, 0), (None, n_features, None)
            chunks = (_SHOWERS_PER_CHUNK, n_features, _HITS_PER_CHUNK)
        compression = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
        self._hits = file.create_dataset(
            LAYOUTS[self.layout], shape=shape, maxshape=maxshape, chunks=chunks, dtype="f4", fillvalue=0.0,
            **compression,
        )  # fmt: skip
        self._energy = file.create_dataset(
            INCIDENT_ENERGY, shape=(0, 1), maxshape=(None, 1), chunks=(65536, 1), dtype="f4", **compression
        )

    def append(self, showers: Showers) -> None:
        if showers.geometry != self.geometry:
            msg = (
                f"showers of geometry {showers.geometry.name!r} appended to {self.path}, "
                f"a file of geometry {self.geometry.name!r}"
            )
            raise ValueError(msg)
        check_showers(showers, source=f"showers written to {self.path}")
        check_cells(showers, source=f"showers written to {self.path}")
        start, stop = self.n_showers, self.n_showers + len(showers)
        self.max_hits = max(self.max_hits, showers.max_hits)
        hit_axis = 1 if self.layout == "reference" else 2
        new_shape = list(self._hits.shape)
        new_shape[0], new_shape[hit_axis] = stop, self.max_hits
        self._hits.resize(tuple(new_shape))  # new slots read as the fill value 0: padding
        width = showers.max_hits
        if self.layout == "reference":
            self._hits[start:stop, :width] = showers.hits.astype(np.float32, copy=False)
        else:
            self._hits[start:stop, :, :width] = showers.hits.astype(np.float32, copy=False).transpose(0, 2, 1)
        self._energy.resize((stop, 1))
        self._energy[start:stop, 0] = showers.incident_energy
        self.n_showers = stop

    def _final_attrs(self) -> dict:
        return {"n_showers": self.n_showers, "max_hits": self.max_hits}


def write_showers(
    path: str | os.PathLike, showers: Showers, *, layout: str = "reference", provenance: dict | None = None
) -> Path:
    """Write showers to a new HDF5 file in ``layout`` ("reference" or "caloclouds"), with their geometry."""
    return write_shower_chunks(path, [showers], layout=layout, provenance=provenance, geometry=showers.geometry)


def write_shower_chunks(
    path: str | os.PathLike,
    chunks: Iterable[Showers],
    *,
    layout: str = "reference",
    provenance: dict | None = None,
    geometry: CalorimeterGeometry = ILD_ECAL,
) -> Path:
    """Write batches of showers of ``geometry`` one after another (e.g. from a simulator's generator) to a new file."""
    with ShowerFileWriter(path, layout=layout, provenance=provenance, geometry=geometry) as writer:
        for showers in chunks:
            writer.append(showers)
    return Path(path)


def reusable_shower_file(path: str | os.PathLike, n_showers: int) -> bool:
    """Whether a cached shower file at ``path`` can be reused: False if there is none, True if it holds
    ``n_showers`` showers; a file holding another number is an error rather than silently reused."""
    path = Path(path)
    if not path.exists():
        return False
    found = shower_file_info(path)["n_showers"]
    if found != n_showers:
        msg = f"{path} holds {found} showers, not {n_showers}; remove it to simulate again"
        raise BadDataError(msg)
    return True


def open_shower_file(path: str | os.PathLike) -> tuple[h5py.File, str]:
    """Open a shower file and recognise its layout; shapes are checked, with errors naming the file.

    Returns the open file and its layout ("reference" or "caloclouds").
    """
    path = Path(path)
    file = open_hdf5(path, what="shower file")
    try:
        layout = _layout(file, path)
        hits = file[LAYOUTS[layout]]
        expected = "(N, max_hits, 4): x, y, z, E per hit" if layout == "reference" else "(N, 4, max_hits)"
        feature_axis = 2 if layout == "reference" else 1
        if hits.ndim != 3 or hits.shape[feature_axis] != len(HIT_FEATURES) or hits.dtype.kind not in "fiu":
            msg = f"/{hits.name[1:]} has shape {hits.shape} and dtype {hits.dtype}, expected {expected}, in {path}"
            raise BadDataError(msg)
        if INCIDENT_ENERGY not in file:
            raise SchemaError(INCIDENT_ENERGY, file.keys(), file=str(path), obj="/")
        energy, n = file[INCIDENT_ENERGY], hits.shape[0]
        if not isinstance(energy, h5py.Dataset) or energy.shape not in {(n,), (n, 1)}:
            shape = energy.shape if isinstance(energy, h5py.Dataset) else "(a group)"
            msg = (
                f"/{INCIDENT_ENERGY} has shape {shape}, expected ({n},) or ({n}, 1): one incident energy [GeV] "
                f"for each of the {n} showers in /{LAYOUTS[layout]}, in {path}"
            )
            raise BadDataError(msg)
    except Exception:
        file.close()
        raise
    return file, layout


def _layout(file: h5py.File, path: Path) -> str:
    """Which layout a file holds, by its hit dataset; the ``layout`` attribute decides if it holds both."""
    present = [layout for layout, name in LAYOUTS.items() if name in file]
    if not present:
        err = SchemaError(LAYOUTS["reference"], file.keys(), file=str(path), obj="/")
        err.message += (
            "\n(a shower file holds 'showers' (N, max_hits, 4) or, CaloClouds layout, 'events' (N, 4, max_hits))"
        )
        raise err
    if len(present) > 1:
        chosen = decode_attr(file.attrs.get("layout", ""))
        if chosen not in present:
            msg = f"{path} holds both /showers and /events; its attribute 'layout' must say which to read"
            raise BadDataError(msg)
        present = [chosen]
    name = LAYOUTS[present[0]]
    if not isinstance(file[name], h5py.Dataset):
        msg = f"/{name} is a group, not a dataset of hits, in {path}"
        raise BadDataError(msg)
    return present[0]


def shower_file_info(path: str | os.PathLike) -> dict:
    """Number of showers, ``max_hits``, layout and the attributes of a shower file (JSON attributes decoded)."""
    file, layout = open_shower_file(path)
    with file:
        info = {key: decode_attr(value) for key, value in file.attrs.items()}
        hits = file[LAYOUTS[layout]]
        info |= {
            "n_showers": hits.shape[0],
            "max_hits": hits.shape[1 if layout == "reference" else 2],
            "layout": layout,
        }
    return info


def read_showers(path: str | os.PathLike, *, start: int = 0, stop: int | None = None) -> Showers:
    """Read showers ``start:stop`` of a shower file (all by default), in either layout."""
    file, layout = open_shower_file(path)
    with file:
        n = file[LAYOUTS[layout]].shape[0]
        stop = n if stop is None else stop
        if not 0 <= start <= stop <= n:
            msg = f"shower range {start}:{stop} outside the file's {n} showers, in {path}"
            raise IndexError(msg)
        return _read_range(file, layout, path, start, stop)


def iter_showers(path: str | os.PathLike, *, chunk_size: int = 1024) -> Iterator[Showers]:
    """Stream a shower file in batches of at most ``chunk_size`` showers; memory stays bounded.

    Every batch keeps the file's ``max_hits``, so concatenating them gives :func:`read_showers`.
    """
    if chunk_size < 1:
        msg = f"chunk_size must be >= 1; got {chunk_size}"
        raise ValueError(msg)
    file, layout = open_shower_file(path)
    with file:
        n = file[LAYOUTS[layout]].shape[0]
        for start in range(0, n, chunk_size):
            yield _read_range(file, layout, path, start, min(start + chunk_size, n))


def _read_range(file: h5py.File, layout: str, path, start: int, stop: int) -> Showers:
    hits = file[LAYOUTS[layout]][start:stop]
    if layout == "caloclouds":
        hits = hits.transpose(0, 2, 1)  # (n, 4, max_hits) -> (n, max_hits, 4)
    incident = file[INCIDENT_ENERGY][start:stop].reshape(-1)
    geometry = file_geometry(file, path)
    showers = Showers(np.ascontiguousarray(hits, dtype=np.float32), incident.astype(np.float32), geometry)
    where = (
        f"{path} (showers {start}:{stop})" if start == 0 else f"{path} (showers {start}:{stop}, numbered from {start})"
    )
    check_showers(showers, source=where)
    check_cells(showers, source=where)
    return showers


def file_geometry(file: h5py.File, path) -> CalorimeterGeometry:
    """The geometry a shower file stores (its ``geometry`` attribute); the ILD-like ECAL if it stores none."""
    if "geometry" not in file.attrs:
        return ILD_ECAL
    try:
        return CalorimeterGeometry.from_dict(decode_attr(file.attrs["geometry"]))
    except (ValueError, TypeError) as err:
        msg = f"the geometry attribute of {path} is not a calorimeter geometry: {err}"
        raise BadDataError(msg) from None


def check_cells(showers: Showers, *, source: str, chunk_size: int = 1024) -> None:
    """Raise :class:`BadDataError` naming ``source`` unless every hit is one whole cell and no cell holds two.

    A shower file stores a calorimeter's readout: one energy per cell.  A hit
    between cells, or two hits in one cell, would be binned wrongly by every
    observable that counts cells, without any error; continuous hits (decoded or
    generated) are put onto the grid by :func:`omnijet_lib.data.shower_preprocessing.voxelise`.
    Showers are checked ``chunk_size`` at a time (sorting the cells of all of them would double the memory).
    """
    hint = "voxelise them first (omnijet_lib.data.shower_preprocessing.voxelise)"
    for start in range(0, len(showers), chunk_size):
        hits = showers.hits[start : start + chunk_size]
        rows, slots = np.nonzero(hits[..., 3] > 0)
        cells = hits[rows, slots, :3]
        between = np.flatnonzero((cells != np.round(cells)).any(axis=1))
        if between.size:
            shower = rows[between[0]]
            count = np.sum(rows[between] == shower)
            msg = (
                f"shower {start + shower} has {count} hit(s) whose x, y, z are not whole cell indices "
                f"(first: {tuple(cells[between[0]].tolist())}), in {source}; {hint}"
            )
            raise BadDataError(msg)
        shape, n_cells = showers.geometry.shape, showers.geometry.n_cells
        voxel = rows.astype(np.int64) * n_cells + np.ravel_multi_index(cells.T.astype(np.int64), shape)
        voxel.sort()
        shared = voxel[1:][voxel[1:] == voxel[:-1]]  # a cell's second, third... hit
        if shared.size:
            shower = shared[0] // n_cells
            cell = np.unravel_index(shared[0] % n_cells, shape)
            count = np.sum(shared // n_cells == shower)
            msg = (
                f"shower {start + shower} has {count} hit(s) in a cell that already holds one "
                f"(first: cell {tuple(int(c) for c in cell)}), in {source}; a cell holds one energy: {hint}"
            )
            raise BadDataError(msg)
