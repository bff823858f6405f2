"""Calorimeter-shower observables of OmniJet-α_C (docs/showers.md), vectorised over all showers.

Every function reads :class:`omnijet_lib.data.showers.Showers`, so simulated,
decoded and generated showers are measured alike.  Cells below half a MIP
(``HIT_THRESHOLD_MEV`` = 0.1 MeV) are noise: only hits with ``E > threshold``
enter, except in the cell-energy spectrum, which shows every stored hit.
Coordinates are in cell units (x, y: 5 mm cells; z: layer index); profiles
assign a hit to the nearest cell, so voxelise generated showers first
(:func:`omnijet_lib.data.shower_preprocessing.voxelise`).
"""

from __future__ import annotations

import numpy as np

from omnijet_lib.data.showers import GRID_SIZE, HIT_THRESHOLD_MEV, Showers

# observable -> axis label, in the order of the paper's figures
SHOWER_OBSERVABLES = {
    "cell_energy": "visible cell energy [MeV]",
    "energy_sum": "visible energy sum [MeV]",
    "n_hits": r"number of hits ($E > 0.1$ MeV)",
    "cog_x": "centre of gravity $x$ [cells]",
    "cog_y": "centre of gravity $y$ [cells]",
    "cog_z": "centre of gravity $z$ [layers]",
    "longitudinal_profile": "layer $z$",
    "radial_profile": "distance $r$ from the shower axis [cells]",
}
RADIAL_BINS = np.arange(0.0, 43.0)  # 1-cell bins up to 42 cells: beyond the grid's largest distance, 29 * sqrt(2)


def _above(showers: Showers, threshold: float) -> np.ndarray:
    """(N, max_hits) energies of the hits above ``threshold``, 0 elsewhere (float64)."""
    energy = showers.energy.astype(np.float64)
    return np.where(energy > threshold, energy, 0.0)


def nearest_cell(coordinate: np.ndarray) -> np.ndarray:
    """Nearest cell (or layer) index of a coordinate in cell units (halves up), clipped into the grid."""
    return np.clip(np.floor(coordinate.astype(np.float64) + 0.5), 0, GRID_SIZE - 1).astype(np.int64)


def cell_energies(showers: Showers) -> np.ndarray:
    """(M,) energy [MeV] of every stored hit of every shower, without threshold: the cell-energy spectrum."""
    return showers.energy[showers.mask].astype(np.float64)


def energy_sum(showers: Showers, *, threshold: float = HIT_THRESHOLD_MEV) -> np.ndarray:
    """(N,) visible energy [MeV] of each shower, summed over hits above ``threshold``."""
    return _above(showers, threshold).sum(axis=1)


def n_hits(showers: Showers, *, threshold: float = HIT_THRESHOLD_MEV) -> np.ndarray:
    """(N,) number of hits above ``threshold`` in each shower."""
    return (showers.energy > threshold).sum(axis=1)


def centre_of_gravity(showers: Showers, *, threshold: float = HIT_THRESHOLD_MEV) -> dict[str, np.ndarray]:
    """Energy-weighted mean x, y, z of each shower's hits above ``threshold``: {"x", "y", "z"} -> (N,).

    NaN for a shower without any hit above threshold, where it is undefined.
    """
    weights = _above(showers, threshold)
    total = weights.sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    return {
        axis: np.where(total > 0, (weights * coordinate).sum(axis=1) / safe, np.nan)
        for axis, coordinate in (("x", showers.x), ("y", showers.y), ("z", showers.z))
    }


def longitudinal_profile(showers: Showers, *, threshold: float = HIT_THRESHOLD_MEV) -> np.ndarray:
    """(N, 30) energy [MeV] of each shower in each layer z (hits above ``threshold``).

    The paper's profile is the mean over showers, ``longitudinal_profile(s).mean(axis=0)``.
    """
    weights = _above(showers, threshold)
    row = np.arange(len(showers))[:, None] * GRID_SIZE + nearest_cell(showers.z)  # (N, max_hits) flat (shower, layer)
    profile = np.bincount(row.reshape(-1), weights=weights.reshape(-1), minlength=len(showers) * GRID_SIZE)
    return profile.reshape(len(showers), GRID_SIZE)


def hit_radius(showers: Showers, *, threshold: float = HIT_THRESHOLD_MEV) -> np.ndarray:
    """(N, max_hits) transverse distance [cells] of each hit from its shower's axis.

    The axis runs along z through the shower's centre of gravity in x, y (hits
    above ``threshold``); NaN for every hit of a shower without such hits.
    """
    cog = centre_of_gravity(showers, threshold=threshold)
    return np.hypot(showers.x - cog["x"][:, None], showers.y - cog["y"][:, None])


def radial_profile(
    showers: Showers, bins: np.ndarray = RADIAL_BINS, *, threshold: float = HIT_THRESHOLD_MEV
) -> np.ndarray:
    """(N, len(bins) - 1) energy [MeV] of each shower in bins of distance from its axis (:func:`hit_radius`).

    The distance is transverse, in cell units (multiply by ``CELL_SIZE_MM`` for mm),
    from the hit's cell centre.  Bins are ``[lo, hi)``, the last one closed;
    hits beyond the edges are not counted (the default edges reach every cell
    of the grid).  The paper's profile is the mean over showers.
    """
    bins = np.asarray(bins, dtype=np.float64)
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


def shower_observables(showers: Showers, *, threshold: float = HIT_THRESHOLD_MEV) -> dict[str, np.ndarray]:
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
