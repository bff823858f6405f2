"""CaloChallenge 2022 files (datasets 2 and 3): voxel vectors in HDF5, binning in XML, read and written.

The Fast Calorimeter Simulation Challenge 2022 (github.com/CaloChallenge/homepage) stores
each shower as one flat vector of voxel energies::

    /incident_energies   (N, 1)          energy of the incoming particle [MeV]
    /showers             (N, n_voxels)   visible energy of each voxel [MeV], 0 where empty

and describes the voxels in a binning XML file (``code/binning_dataset_2.xml``)::

    <Bins>
       <Bin pid="11" name="electron">
          <Layer id="0" r_edges="0,4.65,9.3,...,41.85" n_bin_alpha="16" />
          ...

Voxel order (checked in the challenge's own code, ``code/XMLHandler.py``:
``fill_r_a_lists`` loops over the angular bins outside and the radial bins inside;
``code/HighLevelFeatures.py``: ``radial_center_mult = num_alpha * [r centres]`` and
``data.reshape(num_alpha, -1)`` per layer): layer-major, then the angular bin α, then
the radial bin r, which runs fastest::

    voxel = layer * (n_alpha * n_r) + alpha * n_r + r

So a file's ``showers`` reshape to (N, n_layers, n_alpha, n_r).  On the project's
cylindrical grid (:mod:`omnijet_lib.data.geometry`) a voxel is the hit
``(x, y, z) = (alpha, r, layer)``.  The challenge counts α from −π (bin α covers
[−π + 2πα/n, −π + 2π(α+1)/n)), the project's ``transverse_mm`` from 0: the cells
are the same, the drawing is turned by π.

Every voxel with energy > 0 becomes a hit; a shower in which no voxel has energy is
not a shower of the project (:func:`~omnijet_lib.data.showers.check_showers` refuses
it): the readers drop it and say so with an :class:`EmptyShowersWarning` naming the
file and the showers' indices in it (make it an error with
``warnings.simplefilter("error", EmptyShowersWarning)``).  Dataset 1, whose layers
have different binnings, does not fit the project's grid and is refused.
"""

from __future__ import annotations

import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from omnijet_lib.atomic import atomic_path
from omnijet_lib.data.geometry import CalorimeterGeometry, cylindrical_geometry
from omnijet_lib.data.hdf5 import HDF5Writer, open_hdf5
from omnijet_lib.data.shower_files import check_cells
from omnijet_lib.data.showers import UNKNOWN_ENERGY, Showers, check_showers
from omnijet_lib.errors import BadDataError, SchemaError, check_int

SHOWERS = "showers"  # (N, n_voxels) voxel energies [MeV]
INCIDENT_ENERGIES = "incident_energies"  # (N, 1) incident energy [MeV]
MEV_PER_GEV = 1000.0
PDG_IDS = {"electron": 11, "photon": 22, "pion": 211}  # the ``pid`` of the challenge's binning files
SCHEMA = "calochallenge-2022"
SCHEMA_VERSION = 1
_CHUNK_BYTES = 1 << 20  # HDF5 chunk of /showers written here: about 1 MB of voxels


class EmptyShowersWarning(UserWarning):
    """Showers without any voxel > 0 were dropped while reading ``path``; ``indices`` are their rows in the file."""

    def __init__(self, path, indices: np.ndarray):
        self.path, self.indices = Path(path), np.asarray(indices)
        first = ", ".join(str(i) for i in self.indices[:5]) + (", ..." if len(self.indices) > 5 else "")
        super().__init__(
            f"dropped {len(self.indices)} shower(s) without any voxel > 0 (rows {first}) in {self.path}: "
            "a shower of the project needs at least one hit"
        )


# --- binning XML ---------------------------------------------------------------------------------


def read_binning(path: str | os.PathLike, particle: str = "electron") -> CalorimeterGeometry:
    """The cylindrical geometry of a CaloChallenge binning XML file, for ``particle``.

    Every layer must have the same angular bins and radial edges (datasets 2 and 3);
    the material is that of datasets 2 and 3 (:func:`cylindrical_geometry`'s default).
    The geometry is named ``calochallenge_<particle>_<n_layers>x<n_alpha>x<n_r>``.
    """
    path = Path(path)
    if not path.exists():
        msg = f"CaloChallenge binning file not found: {path}"
        raise FileNotFoundError(msg)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        msg = f"not an XML file (or unreadable): {path}: {err}"
        raise BadDataError(msg) from None
    found = [element for element in root if element.get("name") == particle]
    if not found:
        names = [str(element.get("name")) for element in root]
        raise SchemaError(particle, names, file=str(path), obj=f"<{root.tag}> (particles by their 'name')")
    if len(found) > 1:
        msg = f"{path} describes particle {particle!r} {len(found)} times; a binning file has one entry per particle"
        raise BadDataError(msg)
    layers = [_parse_layer(element, position, path) for position, element in enumerate(found[0])]
    if not layers:
        msg = f"no <Layer> for particle {particle!r} in {path}"
        raise BadDataError(msg)
    n_alpha, edges = layers[0]
    for layer, (layer_alpha, layer_edges) in enumerate(layers):
        if layer_alpha != n_alpha or layer_edges != edges:
            msg = (
                f"layer {layer} of particle {particle!r} in {path} has {layer_alpha} α × {len(layer_edges) - 1} r bins "
                f"(r_edges {_format_edges(layer_edges)}), layer 0 {n_alpha} α × {len(edges) - 1} r bins "
                f"(r_edges {_format_edges(edges)}): the project's cylindrical grid needs the same α and r bins "
                "in every layer (CaloChallenge datasets 2 and 3; dataset 1 is not supported)"
            )
            raise BadDataError(msg)
    name = f"calochallenge_{particle}_{len(layers)}x{n_alpha}x{len(edges) - 1}"
    source = f"CaloChallenge 2022 binning file, particle {particle!r}; material of datasets 2 and 3"
    try:
        return cylindrical_geometry(name, n_alpha=n_alpha, radial_edges_mm=edges, n_layers=len(layers), source=source)
    except ValueError as err:
        msg = f"the binning of particle {particle!r} in {path} is not a cylindrical grid: {err}"
        raise BadDataError(msg) from None


def _parse_layer(element: ET.Element, position: int, path: Path) -> tuple[int, tuple[float, ...]]:
    """(n_bin_alpha, r_edges) of one ``<Layer>``; its ``id`` must be its position (layers are read in order)."""
    where = f"<{element.tag}> number {position} of {path}"
    if element.tag != "Layer":
        msg = f"{where} is not a <Layer>"
        raise BadDataError(msg)
    missing = [key for key in ("id", "r_edges", "n_bin_alpha") if key not in element.attrib]
    if missing:
        msg = f"{where} lacks the attribute(s) {missing}; a layer has id, r_edges and n_bin_alpha"
        raise BadDataError(msg)
    try:
        layer_id, n_alpha = int(element.get("id")), int(element.get("n_bin_alpha"))
        edges = tuple(float(r) for r in element.get("r_edges").split(","))
    except ValueError:
        msg = (
            f"{where} is malformed: id={element.get('id')!r}, n_bin_alpha={element.get('n_bin_alpha')!r}, "
            f"r_edges={element.get('r_edges')!r} (expected integers and comma-separated numbers)"
        )
        raise BadDataError(msg) from None
    if layer_id != position:
        msg = f"{where} has id {layer_id}; layers must be numbered 0, 1, 2, ... in the order they appear"
        raise BadDataError(msg)
    if n_alpha < 1:
        msg = f"layer {layer_id} in {path} has n_bin_alpha = {n_alpha}; it needs at least 1"
        raise BadDataError(msg)
    array = np.asarray(edges)
    if len(edges) < 2 or edges[0] != 0 or not np.all(np.isfinite(array)) or np.any(np.diff(array) <= 0):
        msg = f"layer {layer_id} in {path} has r_edges {_format_edges(edges)}; it needs increasing edges from 0"
        raise BadDataError(msg)
    return n_alpha, edges


def write_binning(path: str | os.PathLike, geometry: CalorimeterGeometry, particle: str = "electron") -> Path:
    """Write the binning XML of a cylindrical geometry in the CaloChallenge layout (atomically)."""
    _require_cylindrical(geometry, "a CaloChallenge binning file")
    attrs = {"pid": str(PDG_IDS[particle])} if particle in PDG_IDS else {}
    root = ET.Element("Bins")
    entry = ET.SubElement(root, "Bin", {**attrs, "name": particle})
    edges = _format_edges(geometry.radial_edges_mm)
    for layer in range(geometry.n_layers):
        ET.SubElement(entry, "Layer", {"id": str(layer), "r_edges": edges, "n_bin_alpha": str(geometry.n_x)})
    ET.indent(root, space="   ")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(ET.tostring(root, encoding="unicode") + "\n")
    return path


def _format_edges(edges) -> str:
    """Comma-separated, shortest text that reads back as the same float (``0,4.65,9.3``)."""
    return ",".join(np.format_float_positional(float(r), trim="-") for r in edges)


def _require_cylindrical(geometry: CalorimeterGeometry, what: str) -> None:
    if geometry.grid != "cylindrical":
        msg = (
            f"{what} needs a cylindrical geometry (angular × radial bins per layer); "
            f"geometry {geometry.name!r} is {geometry.grid}"
        )
        raise ValueError(msg)


# --- reading ---------------------------------------------------------------------------------------


def open_calochallenge(path: str | os.PathLike, geometry: CalorimeterGeometry) -> h5py.File:
    """Open a CaloChallenge file and check its datasets against ``geometry``; errors name the file."""
    _require_cylindrical(geometry, "reading a CaloChallenge file")
    path = Path(path)
    file = open_hdf5(path, what="CaloChallenge file")
    try:
        for key in (SHOWERS, INCIDENT_ENERGIES):
            if key not in file:
                err = SchemaError(key, file.keys(), file=str(path), obj="/")
                err.message += "\n(a CaloChallenge file holds 'showers' (N, n_voxels) and 'incident_energies' (N, 1))"
                raise err
            if not isinstance(file[key], h5py.Dataset) or file[key].dtype.kind not in "fiu":
                msg = f"/{key} in {path} is not a numeric dataset"
                raise BadDataError(msg)
        showers, energies = file[SHOWERS], file[INCIDENT_ENERGIES]
        if showers.ndim != 2:
            msg = (
                f"/{SHOWERS} has shape {showers.shape}, expected (N, n_voxels): one voxel vector per shower, in {path}"
            )
            raise BadDataError(msg)
        if showers.shape[1] != geometry.n_cells:
            layers, alpha, radial = geometry.n_layers, geometry.n_x, geometry.n_y
            msg = (
                f"/{SHOWERS} in {path} has {showers.shape[1]} voxels per shower, but geometry {geometry.name!r} has "
                f"{geometry.n_cells} = {layers} layers × {alpha} α × {radial} r bins: the binning file does not match "
                "this file (CaloChallenge dataset 2 has 6480 voxels, dataset 3 has 40500)"
            )
            raise BadDataError(msg)
        n = showers.shape[0]
        if energies.shape not in {(n,), (n, 1)}:
            msg = (
                f"/{INCIDENT_ENERGIES} has shape {energies.shape}, expected ({n}, 1): one incident energy [MeV] "
                f"for each of the {n} showers in /{SHOWERS}, in {path}"
            )
            raise BadDataError(msg)
    except Exception:
        file.close()
        raise
    return file


def read_calochallenge(
    path: str | os.PathLike, geometry: CalorimeterGeometry, *, start: int = 0, stop: int | None = None
) -> Showers:
    """Read showers ``start:stop`` (all by default) of a CaloChallenge file onto ``geometry`` (from :func:`read_binning`).

    Hits are the voxels with energy > 0 at (α bin, r bin, layer), in voxel order,
    padded to the shower with most hits; incident energies are converted to GeV.
    Showers without any such voxel are dropped with an :class:`EmptyShowersWarning`.
    """
    with open_calochallenge(path, geometry) as file:
        n = file[SHOWERS].shape[0]
        stop = n if stop is None else stop
        if not 0 <= start <= stop <= n:
            msg = f"shower range {start}:{stop} outside the file's {n} showers, in {path}"
            raise IndexError(msg)
        return _read_range(file, geometry, Path(path), start, stop)


def iter_calochallenge(
    path: str | os.PathLike, geometry: CalorimeterGeometry, *, chunk_size: int = 1024
) -> Iterator[Showers]:
    """Stream a CaloChallenge file in batches of at most ``chunk_size`` showers; memory stays bounded.

    Each batch is padded to its own widest shower (:func:`concatenate_showers` joins
    them into :func:`read_calochallenge`'s result).  Dropped empty showers are warned
    about batch by batch; a batch of only empty showers is not yielded.  A bad
    argument or file is an error at the call, not at the first batch.
    """
    check_int(chunk_size, "chunk_size", minimum=1)
    open_calochallenge(path, geometry).close()
    return _iter_calochallenge(Path(path), geometry, chunk_size)


def _iter_calochallenge(path: Path, geometry: CalorimeterGeometry, chunk_size: int) -> Iterator[Showers]:
    with open_calochallenge(path, geometry) as file:
        n = file[SHOWERS].shape[0]
        for start in range(0, n, chunk_size):
            showers = _read_range(file, geometry, path, start, min(start + chunk_size, n))
            if len(showers):
                yield showers


def _read_range(file: h5py.File, geometry: CalorimeterGeometry, path: Path, start: int, stop: int) -> Showers:
    where = f"{path} (showers {start}:{stop})"
    voxels = np.asarray(file[SHOWERS][start:stop], dtype=np.float32)
    incident = np.asarray(file[INCIDENT_ENERGIES][start:stop], dtype=np.float64).reshape(-1)
    for what, values in (("voxel energies", voxels), ("incident energies", incident)):
        for kind, bad in (("non-finite (NaN/inf)", ~np.isfinite(values)), ("negative", values < 0)):
            if bad.any():
                row = start + int(np.argmax(bad.reshape(len(values), -1).any(axis=1)))
                msg = f"{int(bad.sum())} {kind} {what} [MeV], first in shower {row}, in {where}"
                raise BadDataError(msg)

    grid = voxels.reshape(len(voxels), geometry.n_layers, geometry.n_x, geometry.n_y)  # (N, layer, α, r): see top
    rows, layer, alpha, radial = np.nonzero(grid > 0)  # C order: shower by shower, in voxel order
    counts = np.bincount(rows, minlength=len(voxels))
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        warnings.warn(EmptyShowersWarning(path, start + empty), stacklevel=3)
    kept = np.flatnonzero(counts > 0)
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)  # position within its shower
    hits = np.zeros((len(voxels), int(counts.max(initial=0)), 4), dtype=np.float32)
    hits[rows, slot] = np.stack([alpha, radial, layer, grid[rows, layer, alpha, radial]], axis=1)
    showers = Showers(hits[kept], (incident[kept] / MEV_PER_GEV).astype(np.float32), geometry)
    check_showers(showers, source=where)
    return showers


# --- writing ---------------------------------------------------------------------------------------


class CaloChallengeWriter(HDF5Writer):
    """Append batches of :class:`Showers` of one cylindrical geometry to a new CaloChallenge file.

    The file holds ``/showers`` (N, n_voxels) and ``/incident_energies`` (N, 1) in MeV,
    as the challenge's ``evaluate.py`` reads them, and the project's attributes
    (schema, geometry, provenance).  Written as ``<path>.<pid>.tmp`` and renamed
    when complete (:class:`~omnijet_lib.data.hdf5.HDF5Writer`).
    """

    reserved = (*HDF5Writer.reserved, "geometry", "voxel_order", "units", "n_showers")

    def __init__(self, path: str | os.PathLike, geometry: CalorimeterGeometry, *, provenance: dict | None = None):
        _require_cylindrical(geometry, "a CaloChallenge file")
        self.geometry, self.n_showers = geometry, 0
        attrs = {
            "geometry": geometry.to_dict(),
            "voxel_order": "layer, alpha, r (r fastest)",
            "units": {SHOWERS: "MeV", INCIDENT_ENERGIES: "MeV"},
        }
        super().__init__(path, schema=SCHEMA, schema_version=SCHEMA_VERSION, attrs=attrs, provenance=provenance)

    def _create(self, file: h5py.File) -> None:
        n_cells = self.geometry.n_cells
        compression = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
        rows = max(1, _CHUNK_BYTES // (4 * n_cells))
        self._showers = file.create_dataset(
            SHOWERS, shape=(0, n_cells), maxshape=(None, n_cells), chunks=(rows, n_cells), dtype="f4", **compression
        )
        # float64: a float32 energy in GeV times 1000 is exact, so read -> write -> read gives the same GeV
        self._energies = file.create_dataset(
            INCIDENT_ENERGIES, shape=(0, 1), maxshape=(None, 1), chunks=(65536, 1), dtype="f8", **compression
        )

    def append(self, showers: Showers) -> None:
        if showers.geometry != self.geometry:
            msg = (
                f"showers of geometry {showers.geometry.name!r} appended to {self.path}, "
                f"a file of geometry {self.geometry.name!r}"
            )
            raise ValueError(msg)
        source = f"showers written to {self.path}"
        check_showers(showers, source=source)
        check_cells(showers, source=source)
        unknown = np.flatnonzero(showers.incident_energy == UNKNOWN_ENERGY)
        if unknown.size:
            msg = (
                f"{unknown.size} shower(s) (first: shower {unknown[0]}) have incident energy 0 (unknown: generated "
                f"without a requested energy), in {source}; a CaloChallenge file needs every shower's incident "
                "energy (its evaluation takes the logarithm)"
            )
            raise BadDataError(msg)
        start, stop = self.n_showers, self.n_showers + len(showers)
        self._showers.resize((stop, self.geometry.n_cells))
        self._showers[start:stop] = showers_to_voxels(showers)
        self._energies.resize((stop, 1))
        self._energies[start:stop, 0] = showers.incident_energy.astype(np.float64) * MEV_PER_GEV
        self.n_showers = stop

    def _final_attrs(self) -> dict:
        return {"n_showers": self.n_showers}


def showers_to_voxels(showers: Showers) -> np.ndarray:
    """(N, n_voxels) float32 voxel energies [MeV] of showers on a cylindrical grid, in CaloChallenge order.

    The hits must be whole cells, one per cell (:func:`~omnijet_lib.data.shower_files.check_cells`).
    """
    geometry = showers.geometry
    _require_cylindrical(geometry, "a CaloChallenge voxel vector")
    rows, slots = np.nonzero(showers.mask)
    alpha, radial, layer, energy = showers.hits[rows, slots].T
    index = np.ravel_multi_index(
        (layer.astype(np.int64), alpha.astype(np.int64), radial.astype(np.int64)),
        (geometry.n_layers, geometry.n_x, geometry.n_y),
    )
    voxels = np.zeros((len(showers), geometry.n_cells), dtype=np.float32)
    voxels[rows, index] = energy
    return voxels


def write_calochallenge(path: str | os.PathLike, showers: Showers, *, provenance: dict | None = None) -> Path:
    """Write showers of a cylindrical geometry as a CaloChallenge file, for the challenge's own evaluation code.

    Refused (nothing written): another grid, hits between cells or two in one cell,
    showers without hits, and an unknown (0) incident energy.
    """
    with CaloChallengeWriter(path, showers.geometry, provenance=provenance) as writer:
        writer.append(showers)
    return Path(path)
