"""How close generated (or token-reconstructed) showers come to simulated ones (OmniJet-α_C, docs/showers.md).

- :func:`shower_distributions`: every observable of the paper's figures as a
  :class:`Distribution` -- per-hit (cell-energy spectrum), per-shower (energy
  sum, number of hits, centre of gravity) and the mean longitudinal and radial
  profiles, which are histograms of layer / radius weighted by energy;
- :func:`~omnijet_lib.metrics.distributions.wasserstein_distances` (shared
  with jets) gives the 1-D Wasserstein distance of each, the profiles compared
  as energy-weighted distributions (their shapes);
- :func:`hit_residuals`: what a tokenizer loses per hit (reconstructed −
  original x, y, z in cells and relative energy), the paper's Fig. 1 resolution.

Generated showers should be voxelised first
(:func:`omnijet_lib.data.shower_preprocessing.voxelise`), as the paper does,
so that both sides are read like a calorimeter.
"""

from __future__ import annotations

import numpy as np

from omnijet_lib.data.shower_preprocessing import ShowerPreprocessingConfig, unscale_hits
from omnijet_lib.data.showers import Showers
from omnijet_lib.metrics.distributions import Distribution
from omnijet_lib.shower_observables import (
    SHOWER_OBSERVABLES,
    cell_energies,
    hit_radius,
    nearest_cell,
    shower_observables,
)

HIT_RESIDUALS = {
    "x": r"$x_\mathrm{rec} - x$ [cells]",
    "y": r"$y_\mathrm{rec} - y$ [cells]",
    "z": r"$z_\mathrm{rec} - z$ [layers]",
    "energy": r"$E_\mathrm{rec} / E - 1$",
}


def shower_distributions(showers: Showers) -> dict[str, Distribution]:
    """The :data:`~omnijet_lib.shower_observables.SHOWER_OBSERVABLES` of ``showers``, in that order.

    Profiles are given hit by hit: the layer (the distance from the shower axis) of
    every hit above threshold, weighted by its energy over the number of showers,
    so that their histogram is the mean energy per layer (per radial bin).  A shower
    without any hit above threshold has no centre of gravity: it is left out of
    ``cog_*`` (the other observables keep it).
    """
    if len(showers) == 0:
        msg = "no showers to measure"
        raise ValueError(msg)
    per_shower = shower_observables(showers)
    distributions = {"cell_energy": Distribution(cell_energies(showers))}
    for name, values in per_shower.items():
        distributions[name] = Distribution(values[np.isfinite(values)])
    above = showers.energy > showers.threshold
    weights = showers.energy[above].astype(np.float64) / len(showers)
    layer = nearest_cell(showers.z, showers.geometry.n_layers)[above].astype(np.float64)
    distributions["longitudinal_profile"] = Distribution(layer, weights)
    distributions["radial_profile"] = Distribution(hit_radius(showers)[above], weights)
    return {name: distributions[name] for name in SHOWER_OBSERVABLES}


DEPTH_UNITS = ("interaction_length", "radiation_length")


def depth_profile(showers: Showers, *, unit: str = "interaction_length") -> Distribution:
    """The longitudinal profile against depth in interaction lengths λ_I (or radiation lengths X0).

    Every hit above threshold counts at the depth of the middle of its layer's active material
    (``geometry.layer_depth_lambda`` / ``layer_depth_x0``), weighted by its energy over the number of
    showers: histogrammed with the layers' boundaries as bins, the mean energy per layer.  Two
    detectors' profiles then share an axis: a hadron shower's length scales with λ_I, an em one's with X0.
    """
    if unit not in DEPTH_UNITS:
        msg = f"unit must be one of {DEPTH_UNITS}; got {unit!r}"
        raise ValueError(msg)
    if len(showers) == 0:
        msg = "no showers to measure"
        raise ValueError(msg)
    geometry = showers.geometry
    depth = geometry.layer_depth_lambda if unit == "interaction_length" else geometry.layer_depth_x0
    above = showers.energy > showers.threshold
    layer = nearest_cell(showers.z, geometry.n_layers)[above].astype(np.int64)
    return Distribution(depth[layer], showers.energy[above].astype(np.float64) / len(showers))


def hit_residuals(
    features: np.ndarray,
    reconstructed: np.ndarray,
    mask: np.ndarray,
    config: ShowerPreprocessingConfig = ShowerPreprocessingConfig(),
) -> dict[str, np.ndarray]:
    """Per hit, reconstructed − original in physical units: x, y [cells], z [layers], energy as E_rec / E − 1.

    ``features`` and ``reconstructed`` are pre-processed (N, L, 4) arrays of the
    same hits in the same order (a tokenizer's ``reconstruct``), ``mask`` (N, L).
    """
    features, reconstructed, mask = np.asarray(features), np.asarray(reconstructed), np.asarray(mask, dtype=bool)
    if features.shape != reconstructed.shape or features.shape[:2] != mask.shape:
        msg = f"features {features.shape}, reconstructed {reconstructed.shape} and mask {mask.shape} must match"
        raise ValueError(msg)
    original, decoded = unscale_hits(features[mask], config), unscale_hits(reconstructed[mask], config)
    residuals = {axis: decoded[:, i] - original[:, i] for i, axis in enumerate("xyz")}
    residuals["energy"] = decoded[:, 3] / original[:, 3] - 1.0
    return residuals
