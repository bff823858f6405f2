"""Calorimeter-shower observables of OmniJet-α_C (docs/showers.md), vectorised over all showers.

Every function reads :class:`omnijet_lib.data.showers.Showers`, so simulated,
decoded and generated showers are measured alike, on the grid of their geometry.
Cells below half a MIP (the geometry's ``hit_threshold_mev``: 0.1 MeV in the ECAL)
are noise: only hits with ``E > threshold`` enter, except in the cell-energy
spectrum, which shows every stored hit.  Transverse coordinates are in cells on a
Cartesian grid (the ECAL's 5 mm cells) and in mm on a cylindrical one (where an
angular bin is no length); z is the layer index.  Profiles assign a hit to the
nearest cell, so voxelise generated showers first
(:func:`omnijet_lib.data.shower_preprocessing.voxelise`).
"""

from __future__ import annotations

import numpy as np

from omnijet_lib.data.geometry import CalorimeterGeometry
from omnijet_lib.data.showers import Showers

# observable -> axis label, in the order of the paper's figures
SHOWER_OBSERVABLES = {
    "cell_energy": "visible cell energy [MeV]",
    "energy_sum": "visible energy sum [MeV]",
    "n_hits": "number of hits above threshold",
    "cog_x": "centre of gravity $x$ [cells]",
    "cog_y": "centre of gravity $y$ [cells]",
    "cog_z": "centre of gravity $z$ [layers]",
    "longitudinal_profile": "layer $z$",
    "radial_profile": "distance $r$ from the shower axis [cells]",
}


def radial_bins(geometry: CalorimeterGeometry) -> np.ndarray:
    """Default bins of the distance from the shower axis: on a Cartesian grid 1-cell bins reaching past its
    largest distance (the ECAL: 0..42 cells, beyond 29 √2), on a cylindrical grid its radial bins [mm]."""
    if geometry.grid == "cylindrical":
        return np.asarray(geometry.radial_edges_mm, dtype=np.float64)
    return np.arange(0.0, np.ceil(np.hypot(geometry.n_x - 1, geometry.n_y - 1)) + 1)


def _threshold(showers: Showers, threshold: float | None) -> float:
    return showers.threshold if threshold is None else threshold


def _above(showers: Showers, threshold: float | None) -> np.ndarray:
    """(N, max_hits) energies of the hits above ``threshold`` (None: the geometry's), 0 elsewhere (float64)."""
    energy = showers.energy.astype(np.float64)
    return np.where(energy > _threshold(showers, threshold), energy, 0.0)


def nearest_cell(coordinate: np.ndarray, n_cells: int) -> np.ndarray:
    """Nearest cell (or layer) index of a coordinate in cell units (halves up), clipped into 0..n_cells - 1."""
    return np.clip(np.floor(coordinate.astype(np.float64) + 0.5), 0, n_cells - 1).astype(np.int64)


def transverse_position(showers: Showers) -> tuple[np.ndarray, np.ndarray]:
    """(N, max_hits) x and y of every hit: cell units on a Cartesian grid, mm on a cylindrical one."""
    if showers.geometry.grid == "cartesian":
        return showers.x, showers.y
    return showers.geometry.transverse_mm(showers.x, showers.y)


def cell_energies(showers: Showers) -> np.ndarray:
    """(M,) energy [MeV] of every stored hit of every shower, without threshold: the cell-energy spectrum."""
    return showers.energy[showers.mask].astype(np.float64)


def energy_sum(showers: Showers, *, threshold: float | None = None) -> np.ndarray:
    """(N,) visible energy [MeV] of each shower, summed over hits above ``threshold`` (None: the geometry's)."""
    return _above(showers, threshold).sum(axis=1)


def n_hits(showers: Showers, *, threshold: float | None = None) -> np.ndarray:
    """(N,) number of hits above ``threshold`` (None: the geometry's) in each shower."""
    return (showers.energy > _threshold(showers, threshold)).sum(axis=1)


def centre_of_gravity(showers: Showers, *, threshold: float | None = None) -> dict[str, np.ndarray]:
    """Energy-weighted mean x, y, z of each shower's hits above ``threshold``: {"x", "y", "z"} -> (N,).

    x, y as :func:`transverse_position` gives them.  NaN for a shower without any hit
    above threshold, where it is undefined.
    """
    weights = _above(showers, threshold)
    total = weights.sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    x, y = transverse_position(showers)
    return {
        axis: np.where(total > 0, (weights * coordinate).sum(axis=1) / safe, np.nan)
        for axis, coordinate in (("x", x), ("y", y), ("z", showers.z))
    }


def longitudinal_profile(showers: Showers, *, threshold: float | None = None) -> np.ndarray:
    """(N, n_layers) energy [MeV] of each shower in each layer z (hits above ``threshold``).

    The paper's profile is the mean over showers, ``longitudinal_profile(s).mean(axis=0)``.
    """
    n_layers = showers.geometry.n_layers
    weights = _above(showers, threshold)
    row = np.arange(len(showers))[:, None] * n_layers + nearest_cell(showers.z, n_layers)  # flat (shower, layer)
    profile = np.bincount(row.reshape(-1), weights=weights.reshape(-1), minlength=len(showers) * n_layers)
    return profile.reshape(len(showers), n_layers)


def hit_radius(showers: Showers, *, threshold: float | None = None) -> np.ndarray:
    """(N, max_hits) transverse distance of each hit from its shower's axis (cells, or mm on a cylindrical grid).

    The axis runs along z through the shower's centre of gravity in x, y (hits
    above ``threshold``); NaN for every hit of a shower without such hits.
    """
    cog = centre_of_gravity(showers, threshold=threshold)
    x, y = transverse_position(showers)
    return np.hypot(x - cog["x"][:, None], y - cog["y"][:, None])


def radial_profile(showers: Showers, bins: np.ndarray | None = None, *, threshold: float | None = None) -> np.ndarray:
    """(N, len(bins) - 1) energy [MeV] of each shower in bins of distance from its axis (:func:`hit_radius`).

    The distance is transverse, from the hit's cell centre: in cell units on a Cartesian
    grid (multiply by the geometry's ``cell_size_mm`` for mm), in mm on a cylindrical one.
    Bins are ``[lo, hi)``, the last one closed; hits beyond the edges are not counted
    (the default, :func:`radial_bins`, reaches every cell of the grid).  The paper's
    profile is the mean over showers.
    """
    bins = radial_bins(showers.geometry) if bins is None else np.asarray(bins, dtype=np.float64)
    if bins.ndim != 1 or len(bins) < 2 or np.any(np.diff(bins) <= 0):
        msg = f"bins must be increasing edges, at least two; got {bins}"
        raise ValueError(msg)
    weights = _above(showers, threshold)
    r = hit_radius(showers, threshold=threshold)  # (N, max_hits); NaN if no cog
    n_bins = len(bins) - 1
    index = np.searchsorted(bins, r, side="right") - 1
    index[r == bins[-1]] = n_bins - 1
    inside = (weights > 0) & (index >= 0) & (index < n_bins)  # NaN distances fall outside
    flat = (np.arange(len(showers))[:, None] * n_bins + index)[inside]
    profile = np.bincount(flat, weights=weights[inside], minlength=len(showers) * n_bins)
    return profile.reshape(len(showers), n_bins)


def shower_observables(showers: Showers, *, threshold: float | None = None) -> dict[str, np.ndarray]:
    """Per-shower observables for the 1-D Wasserstein comparisons: energy_sum, n_hits, cog_x, cog_y, cog_z.

    Each is an (N,) array; the centre of gravity is NaN for a shower with no hit
    above threshold (drop those before comparing distributions).
    """
    cog = centre_of_gravity(showers, threshold=threshold)
    return {
        "energy_sum": energy_sum(showers, threshold=threshold),
        "n_hits": n_hits(showers, threshold=threshold).astype(np.float64),
        "cog_x": cog["x"],
        "cog_y": cog["y"],
        "cog_z": cog["z"],
    }


def shower_start_layer(showers: Showers) -> np.ndarray:
    """(N,) the first layer not holding exactly one hit: where a hadron shower starts (n_layers: a punch-through
    track).

    In front of its first interaction a pion leaves one hit per layer (its track); the layer
    behind the interaction holds its charged secondaries.  An estimate from the hits alone, as a
    test beam analysis has it (within a layer: a shower may start in the absorber just in front).
    All stored hits count, also those below threshold.
    """
    keep = showers.mask
    shower = np.broadcast_to(np.arange(len(showers))[:, None], keep.shape)[keep]
    counts = np.zeros((len(showers), showers.geometry.n_layers), dtype=np.int64)
    np.add.at(counts, (shower, showers.z[keep].astype(np.int64)), 1)
    differs = counts != 1
    return np.where(differs.any(axis=1), differs.argmax(axis=1), showers.geometry.n_layers)
