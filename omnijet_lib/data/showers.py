"""The in-memory representation of calorimeter showers, on the grid of their detector.

A shower is a point cloud of hits: the cell each hit lies in (``x``, ``y`` transverse,
``z`` the layer, integer cell indices of its :class:`~omnijet_lib.data.geometry.CalorimeterGeometry`,
stored as float) and the visible energy deposited in its active material (MeV).
:class:`Showers` holds them padded to a common number of hits (a padded slot has
energy 0) with their geometry; the photon showers of OmniJet-α_C lie on the
30 × 30 × 30 grid of the ILD-like Si-W ECAL (docs/showers.md), the default.
Simulated, imported, decoded and generated showers all end up here, so every
observable reads them alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omnijet_lib.data.geometry import ILD_ECAL, CalorimeterGeometry
from omnijet_lib.errors import BadDataError

# The ILD Si-W ECAL (docs/showers.md), as its photon simulator and the paper's observables name it.
GRID_SIZE = ILD_ECAL.n_x  # cells per axis of the x, y, z grid
CELL_SIZE_MM = ILD_ECAL.cell_size_mm  # transverse cell pitch
N_LAYERS = ILD_ECAL.n_layers
ABSORBER_MM = np.array(ILD_ECAL.absorber_mm)  # tungsten in front of each silicon layer
SILICON_MM = ILD_ECAL.active_mm

MIP_MEV = ILD_ECAL.mip_mev  # most probable energy of a minimum-ionising particle in 0.5 mm Si
HIT_THRESHOLD_MEV = ILD_ECAL.hit_threshold_mev  # half a MIP: below it a cell is noise, not a hit

HIT_FEATURES = ("x", "y", "z", "energy")  # the columns of Showers.hits
# The incident energy of a shower generated without asking for one (an unconditional model).
UNKNOWN_ENERGY = 0.0


@dataclass(frozen=True)
class Showers:
    """A batch of showers, in cell units of their geometry and MeV."""

    hits: np.ndarray  # (N, max_hits, 4) float32: x, y, z cell indices and energy [MeV]; energy 0 where padded
    incident_energy: np.ndarray  # (N,) float32: energy of the incoming particle [GeV], or UNKNOWN_ENERGY
    geometry: CalorimeterGeometry = ILD_ECAL

    def __post_init__(self) -> None:
        if self.hits.ndim != 3 or self.hits.shape[-1] != len(HIT_FEATURES):
            msg = f"Showers.hits must have shape (N, max_hits, {len(HIT_FEATURES)}); got {self.hits.shape}"
            raise ValueError(msg)
        if len(self.incident_energy) != len(self.hits):
            msg = f"Showers.incident_energy has {len(self.incident_energy)} entries but there are {len(self.hits)} showers"
            raise ValueError(msg)

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, selection) -> Showers:
        """Select showers by slice, integer array or boolean mask."""
        if isinstance(selection, (int, np.integer)):
            selection = slice(selection, selection + 1 if selection != -1 else None)
        return Showers(self.hits[selection], self.incident_energy[selection], self.geometry)

    @property
    def threshold(self) -> float:
        """Visible energy [MeV] below which a cell of this geometry is noise, not a hit."""
        return self.geometry.hit_threshold_mev

    @property
    def max_hits(self) -> int:
        return self.hits.shape[1]

    @property
    def mask(self) -> np.ndarray:
        """(N, max_hits) bool: True where a slot holds a hit (energy > 0)."""
        return self.hits[..., 3] > 0

    @property
    def n_hits(self) -> np.ndarray:
        """(N,) number of stored hits of each shower (any energy > 0)."""
        return self.mask.sum(axis=1)

    @property
    def x(self) -> np.ndarray:
        return self.hits[..., 0]

    @property
    def y(self) -> np.ndarray:
        return self.hits[..., 1]

    @property
    def z(self) -> np.ndarray:
        return self.hits[..., 2]

    @property
    def energy(self) -> np.ndarray:
        """(N, max_hits) visible hit energy [MeV], 0 where padded."""
        return self.hits[..., 3]


def concatenate_showers(batches: list[Showers]) -> Showers:
    """Join batches of showers of one geometry, padding to the largest ``max_hits``."""
    if not batches:
        msg = "cannot concatenate an empty list of shower batches"
        raise ValueError(msg)
    geometries = {b.geometry.name for b in batches}
    if len(geometries) > 1 or any(b.geometry != batches[0].geometry for b in batches):
        msg = f"cannot concatenate showers of different geometries: {sorted(geometries)}"
        raise ValueError(msg)
    width = max(b.max_hits for b in batches)
    hits = [np.pad(b.hits, ((0, 0), (0, width - b.max_hits), (0, 0))) for b in batches]
    return Showers(np.concatenate(hits), np.concatenate([b.incident_energy for b in batches]), batches[0].geometry)


def check_showers(showers: Showers, *, source: str) -> None:
    """Raise :class:`BadDataError` naming ``source`` if the showers are not physical.

    NaN or infinite values, negative energies, hits outside the grid and showers
    without any hit are refused: each would silently poison a histogram or a log.
    An incident energy of 0 (:data:`UNKNOWN_ENERGY`) marks a generated shower
    whose energy nobody chose.
    """
    for what, values in (("hit", showers.hits), ("incident energy", showers.incident_energy)):
        bad = ~np.isfinite(values)
        if bad.any():
            first = np.unravel_index(np.argmax(bad), bad.shape)[0]
            msg = f"{bad.sum()} non-finite (NaN/inf) {what} values, first in shower {first}, in {source}"
            raise BadDataError(msg)
    if (showers.energy < 0).any():
        first = np.argmax((showers.energy < 0).any(axis=1))
        msg = f"hit with negative energy in shower {first}, in {source}"
        raise BadDataError(msg)
    coordinates = showers.hits[..., :3][showers.mask]
    shape = np.array(showers.geometry.shape)
    if len(coordinates) and ((coordinates.min(axis=0) < -0.5).any() or (coordinates.max(axis=0) > shape - 0.5).any()):
        grid = " × ".join(map(str, shape))
        msg = f"hit coordinates outside the {grid} grid of geometry {showers.geometry.name!r} in {source}"
        raise BadDataError(msg)
    empty = np.flatnonzero(showers.n_hits == 0)
    if empty.size:
        msg = f"{empty.size} shower(s) without hits (first: shower {empty[0]}) in {source}"
        raise BadDataError(msg)
    if (showers.incident_energy < 0).any():
        msg = f"negative incident energy in shower {np.argmax(showers.incident_energy < 0)}, in {source}"
        raise BadDataError(msg)
