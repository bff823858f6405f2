"""Showers as sequences of hits: whole voxels and log energies in a fixed order, for the direct-token model.

The direct-token shower model (:mod:`omnijet_lib.models.spatial_gpt`) reads a
shower hit by hit: each hit its voxel (x, y, z cell indices) and its log energy
``log(E / MeV) + shift`` (the shower pre-processing's, shift 1), in one of
:data:`ORDERS`.  :func:`hit_sequences` makes them from showers on the grid,
:func:`showers_from_hits` turns them back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omnijet_lib.data.geometry import ILD_ECAL, CalorimeterGeometry
from omnijet_lib.data.showers import Showers, check_showers
from omnijet_lib.errors import BadDataError

ORDERS = ("energy", "layer")  # hits by falling energy (the paper), or by layer, then falling energy


@dataclass(frozen=True)
class HitSequences:
    """Showers as the direct model reads them: integer voxels and log energies, in sequence order."""

    voxels: np.ndarray  # (N, L, 3) int64: x, y, z cell indices; 0 where padded
    log_energy: np.ndarray  # (N, L) float32: log(E / MeV) + shift; 0 where padded
    mask: np.ndarray  # (N, L) bool
    incident_energy: np.ndarray  # (N,) float32 [GeV]
    geometry: CalorimeterGeometry = ILD_ECAL  # the grid of the voxels

    def __len__(self) -> int:
        return len(self.voxels)

    @property
    def n_hits(self) -> np.ndarray:
        return self.mask.sum(axis=1)


def hit_sequences(
    showers: Showers, *, order: str = "energy", max_hits: int = 1700, log_energy_shift: float = 1.0
) -> HitSequences:
    """Showers on the grid -> :class:`HitSequences` ordered by ``order`` (see :data:`ORDERS`).

    Coordinates must be whole cell indices (simulated or voxelised showers).  A shower
    with more than ``max_hits`` hits is an error rather than silently cut.
    """
    if order not in ORDERS:
        msg = f"order must be one of {ORDERS}, got {order!r}"
        raise ValueError(msg)
    check_showers(showers, source="showers for the direct model")
    coordinates = showers.hits[..., :3][showers.mask]
    if not np.array_equal(coordinates, np.round(coordinates)):
        msg = "hit coordinates must be whole cell indices; voxelise generated or reconstructed showers first"
        raise BadDataError(msg)
    too_many = showers.n_hits > max_hits
    if too_many.any():
        msg = f"{too_many.sum()} shower(s) have more than max_hits = {max_hits} hits (most: {showers.n_hits.max()})"
        raise BadDataError(msg)
    energy = showers.energy
    if order == "energy":
        ranks = np.argsort(-energy, axis=1, kind="stable")
    else:  # padding (E = 0) last, then layer ascending, then energy falling
        ranks = np.lexsort((-energy, showers.z, ~showers.mask), axis=1)
    width = max(1, int(showers.n_hits.max()))  # <= max_hits, checked above
    hits = np.take_along_axis(showers.hits, ranks[..., None], axis=1)[:, :width]
    mask = hits[..., 3] > 0
    voxels = np.where(mask[..., None], hits[..., :3], 0).astype(np.int64)
    log_energy = np.where(mask, np.log(np.where(mask, hits[..., 3], 1.0)) + log_energy_shift, 0.0).astype(np.float32)
    return HitSequences(voxels, log_energy, mask, showers.incident_energy.astype(np.float32), showers.geometry)


def visible_energy(hits: HitSequences, *, log_energy_shift: float = 1.0) -> np.ndarray:
    """(N,) each shower's visible energy, the sum of its hit energies [MeV]."""
    energy = np.exp(hits.log_energy.astype(np.float64) - log_energy_shift)
    return np.where(hits.mask, energy, 0.0).sum(axis=1)


def check_order(hits: HitSequences, order: str, *, source: str = "hits") -> None:
    """Raise :class:`BadDataError` unless ``hits`` are in ``order`` (as :func:`hit_sequences` makes them)."""
    both = hits.mask[:, 1:]  # a hit and its predecessor
    falling = hits.log_energy[:, 1:] <= hits.log_energy[:, :-1]
    if order == "energy":
        ok = falling | ~both
    else:
        z = hits.voxels[..., 2]
        ok = (z[:, 1:] > z[:, :-1]) | ((z[:, 1:] == z[:, :-1]) & falling) | ~both
    if not ok.all():
        msg = f"{source} are not ordered by {order}: make them with hit_sequences(showers, order={order!r})"
        raise BadDataError(msg)


def showers_from_hits(hits: HitSequences, *, log_energy_shift: float = 1.0) -> Showers:
    """The inverse of :func:`hit_sequences` (hits stay in sequence order)."""
    energy = np.where(hits.mask, np.exp(hits.log_energy.astype(np.float64) - log_energy_shift), 0.0)
    energy = np.where(hits.mask, np.maximum(energy, np.finfo(np.float32).tiny), 0.0)
    values = np.concatenate([hits.voxels.astype(np.float64), energy[..., None]], axis=-1)
    values[~hits.mask] = 0.0
    return Showers(values.astype(np.float32), hits.incident_energy.astype(np.float32), hits.geometry)
