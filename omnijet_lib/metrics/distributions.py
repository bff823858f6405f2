"""Observables as distributions, jets' and showers' alike, and the 1-D Wasserstein distance between two samples of each.

A :class:`Distribution` is an observable's values, with per-value weights where
it is a profile (e.g. hit layers weighted by hit energy: the mean longitudinal
profile).  :func:`~omnijet_lib.metrics.generation_quality.jet_distributions` and
:func:`~omnijet_lib.metrics.shower_quality.shower_distributions` return them by
name; :func:`wasserstein_distances` compares two such sets and
:func:`omnijet_lib.plotting.compare_observable` draws one observable of several.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.stats import wasserstein_distance


class Distribution(NamedTuple):
    """Values of an observable, and per-value weights where it is a profile (None: unweighted)."""

    values: np.ndarray
    weights: np.ndarray | None = None


def wasserstein_distances(generated: dict[str, Distribution], reference: dict[str, Distribution]) -> dict[str, float]:
    """1-D Wasserstein distance of every observable the two hold, in its own units.

    Profiles compare their weighted shapes (each normalised to one), so the number
    is a distance in layers or cells; an empty profile has no shape (NaN).
    """
    differ = sorted(set(reference) ^ set(generated))
    if differ:
        msg = f"generated and reference must hold the same observables; only one holds {differ}"
        raise ValueError(msg)
    distances = {}
    for name, ref in reference.items():
        gen = generated[name]
        if len(gen.values) == 0 or len(ref.values) == 0:
            msg = f"observable {name!r} has no values on one side (generated {len(gen.values)}, reference {len(ref.values)})"
            raise ValueError(msg)
        if (gen.weights is not None and gen.weights.sum() <= 0) or (ref.weights is not None and ref.weights.sum() <= 0):
            distances[name] = float("nan")
            continue
        distances[name] = float(wasserstein_distance(gen.values, ref.values, gen.weights, ref.weights))
    return distances
