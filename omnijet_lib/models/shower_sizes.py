"""Per-shower quantities the direct-token model draws from fits rather than learns: log-normals in the incident energy.

When only an incident energy is asked for, a model conditioned on the number of hits
needs that number, and some energy strategies
(:mod:`omnijet_lib.models.energy_strategies`) the shower's visible energy or its
hottest cell's energy.  Each is drawn from a log-normal whose mean and width are
polynomials in ``log(E_inc / 30 GeV)``, fitted to the training showers and stored
with the model's weights (:class:`LogNormalInEnergy`) -- as shower-size models do in
point-cloud generators (e.g. CaloClouds).  The number of hits and the visible energy
rise and fall together at a fixed incident energy, so a model that needs both draws
them together (:data:`SHOWER_SIZES`, :func:`omnijet_lib.generation.hits.draw_shower_sizes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import ndtr, ndtri
from torch import Tensor

from omnijet_lib.data.hit_sequences import HitSequences, visible_energy
from omnijet_lib.errors import BadDataError

REFERENCE_INCIDENT_GEV = (
    30.0  # fits and the model's condition read x = log(E / 30 GeV): about -1.1..1.2 over 10-100 GeV
)
LOG_NORMAL_DEGREE = 2  # a fitted log-normal's mean is a polynomial of this degree in x ...
# ... and its width of this one: the width comes from a fit through the residuals' sizes, which a quadratic
# follows into noise at the ends of the energy range (docs/direct_tokens.md)
LOG_NORMAL_WIDTH_DEGREE = 1
# How log(value) scatters about its fitted mean, in units of the fitted width (SpatialGPTConfig.size_residuals):
# "normal" -- a log-normal, right for photon showers; "empirical" -- the training showers' own standardised
# residuals, kept as quantiles.  A pion's visible energy at fixed E_inc has a long low tail (late starts,
# leakage, punch-through: a skewness of about -4 to -7 in log), and a log-normal through it misplaces the mean by
# several per cent (docs/hcal_pions.md); the quantiles keep the tail and the mean.
SIZE_RESIDUALS = ("normal", "empirical")
N_RESIDUAL_QUANTILES = 101  # at probabilities 0, 0.01, .., 1: the extremes are the training's


@dataclass(frozen=True)
class LogNormalInEnergy:
    """log(value) ~ Normal(mean(log E), width(log E)), polynomials fitted to simulated showers.

    A per-shower quantity (the number of hits, the hottest cell's energy) at incident
    energy E; a direct model draws it from here rather than learning it from one example per shower.
    """

    mean_coefficients: tuple[float, ...]  # numpy.polyval order, in x = log(E / 30 GeV)
    width_coefficients: tuple[float, ...]
    # Empty: log(value) is Normal about its mean (a log-normal).  Else the quantiles, at N_RESIDUAL_QUANTILES
    # equally spaced probabilities from 0 to 1, of the training showers' standardised residuals
    # (log(value) - mean) / width: draws then follow their shape (see SIZE_RESIDUALS).
    residual_quantiles: tuple[float, ...] = ()

    @classmethod
    def fit(cls, incident_energy, values, *, degree: int = LOG_NORMAL_DEGREE, residuals: str = "normal"):
        if residuals not in SIZE_RESIDUALS:
            msg = f"residuals must be one of {SIZE_RESIDUALS}, got {residuals!r}"
            raise ValueError(msg)
        x = np.log(np.asarray(incident_energy, dtype=np.float64) / REFERENCE_INCIDENT_GEV)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log(np.asarray(values, dtype=np.float64))
        if len(x) <= 2 * degree + 1 or not np.isfinite(y).all():
            msg = f"fitting {cls.__name__} needs more than {2 * degree + 1} showers, each with a value > 0"
            raise BadDataError(msg)
        mean = np.polyfit(x, y, degree)
        # E|r| = width * sqrt(2 / pi) for a Gaussian residual r: a fit of |r| gives the width.
        width_degree = min(degree, LOG_NORMAL_WIDTH_DEGREE)
        width = np.polyfit(x, np.abs(y - np.polyval(mean, x)) * math.sqrt(math.pi / 2), width_degree)
        width = np.concatenate([np.zeros(degree - width_degree), width])  # stored as long as the mean's
        quantiles = ()
        if residuals == "empirical":
            standardised = (y - np.polyval(mean, x)) / np.maximum(np.polyval(width, x), 1e-9)
            quantiles = tuple(np.quantile(standardised, np.linspace(0.0, 1.0, N_RESIDUAL_QUANTILES)).tolist())
        return cls(tuple(mean.tolist()), tuple(width.tolist()), quantiles)

    def residual(self, normal) -> np.ndarray:
        """Standard-normal numbers -> residuals of the fitted shape (the same numbers for a log-normal)."""
        normal = np.asarray(normal, dtype=np.float64)
        if not self.residual_quantiles:
            return normal
        levels = np.linspace(0.0, 1.0, len(self.residual_quantiles))
        return np.interp(ndtr(normal), levels, self.residual_quantiles)

    def normal(self, residual) -> np.ndarray:
        """Residuals -> the standard-normal numbers :meth:`residual` maps to them (a Gaussian copula)."""
        residual = np.asarray(residual, dtype=np.float64)
        if not self.residual_quantiles:
            return residual
        n = len(self.residual_quantiles)
        strictly_rising = np.asarray(self.residual_quantiles) + 1e-12 * np.arange(n)  # ties (whole hit counts)
        probability = np.interp(residual, strictly_rising, np.linspace(0.0, 1.0, n))
        return ndtri(np.clip(probability, 0.5 / n, 1 - 0.5 / n))  # beyond the training's extremes: the last level

    def mean_and_width(self, incident_energy) -> tuple[np.ndarray, np.ndarray]:
        """Mean and width of log(value) at each incident energy [GeV]."""
        x = np.log(np.asarray(incident_energy, dtype=np.float64) / REFERENCE_INCIDENT_GEV)
        return np.polyval(self.mean_coefficients, x), np.maximum(np.polyval(self.width_coefficients, x), 0.0)

    def as_tensor(self) -> Tensor:
        """Mean, then width coefficients, then any residual quantiles: how a model stores the fit with its weights."""
        values = np.concatenate([self.mean_coefficients, self.width_coefficients, self.residual_quantiles])
        return torch.as_tensor(values, dtype=torch.float64)

    @classmethod
    def from_tensor(cls, values: Tensor):
        values = values.cpu().numpy().tolist()
        n = LOG_NORMAL_DEGREE + 1
        return cls(tuple(values[:n]), tuple(values[n : 2 * n]), tuple(values[2 * n :]))

    def sample(self, incident_energy, *, rng: np.random.Generator) -> np.ndarray:
        """One value per incident energy [GeV]."""
        mean, width = self.mean_and_width(incident_energy)
        if self.residual_quantiles:
            return self.at(incident_energy, rng.normal(size=np.shape(mean)))
        return np.exp(rng.normal(mean, width))

    def standardised(self, incident_energy, values) -> np.ndarray:
        """Where log(value) lies at each incident energy [GeV], as a standard-normal number: for a log-normal, how
        many widths above its mean; with residual quantiles, the normal number of the same probability."""
        mean, width = self.mean_and_width(incident_energy)
        return self.normal((np.log(np.asarray(values, dtype=np.float64)) - mean) / np.maximum(width, 1e-9))

    def at(self, incident_energy, standardised) -> np.ndarray:
        """The value at standard-normal number ``standardised`` (the inverse of :meth:`standardised`)."""
        mean, width = self.mean_and_width(incident_energy)
        return np.exp(mean + width * self.residual(standardised))


class HitCountModel(LogNormalInEnergy):
    """The number of hits a shower of incident energy E has (:class:`LogNormalInEnergy`)."""

    def sample(self, incident_energy, *, max_hits: int, rng: np.random.Generator) -> np.ndarray:
        """One number of hits (int64, 1..max_hits) per incident energy [GeV]."""
        return as_hit_count(super().sample(incident_energy, rng=rng), max_hits)


def as_hit_count(values, max_hits: int) -> np.ndarray:
    """Drawn hit counts, rounded into 1..max_hits (int64)."""
    return np.clip(np.rint(values), 1, max_hits).astype(np.int64)


# Per-shower quantities a model may draw from log-normals fitted to its training showers (which ones it uses
# follows from its config: SpatialGPTConfig.fitted_quantities), and the class of each one's fit.
FITTED_QUANTITIES = {
    "hit_count": HitCountModel,
    "hottest_cell": LogNormalInEnergy,  # its energy [MeV]
    "visible_energy": LogNormalInEnergy,  # [MeV]
}
SHOWER_SIZES = ("hit_count", "visible_energy")  # the fitted quantities drawn together


def per_shower_quantities(hits: HitSequences, quantities, *, log_energy_shift: float = 1.0) -> dict[str, np.ndarray]:
    """The values, one per shower, of each of ``quantities`` (names in :data:`FITTED_QUANTITIES`), in that order.

    ``hottest_cell`` is the first hit's energy: ``hits`` must be in energy order.
    """
    values = {
        "hit_count": lambda: hits.n_hits,
        "hottest_cell": lambda: np.exp(hits.log_energy[:, 0].astype(np.float64) - log_energy_shift),
        "visible_energy": lambda: visible_energy(hits, log_energy_shift=log_energy_shift),
    }
    return {quantity: values[quantity]() for quantity in quantities}
