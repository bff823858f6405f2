"""Token quality as resolution: how well decode(encode(jet)) reproduces the jet.

For every constituent and every jet, residual = reconstructed - original; the
resolution of a tokenizer is the width sigma of a Gaussian fitted to the core of
the residual histogram, its shift the fitted mean (paper Fig. 4: the
unconditional tokens shift the jet mass by ~15 GeV; a larger codebook narrows
sigma several-fold).

Every function here takes *physical* constituents: jagged awkward arrays of
records with fields ``pt`` [GeV], ``eta``, ``phi`` — what
:func:`omnijet_lib.observables.jet_observables` takes, ``Jets.constituents``
holds and :func:`omnijet_lib.data.preprocessing.constituents_from_features`
(or ``Tokenizer.decode_constituents``) returns from scaled features.  Give the
original jets through the same ``constituents_from_features`` as their
reconstruction (``PreprocessedJets.features``), so both went through the same
cone cut and 128-constituent limit and stand position by position.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import awkward as ak
import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from omnijet_lib.errors import BadDataError
from omnijet_lib.observables import delta_phi, jet_kinematics, jet_observables

JET_OBSERVABLES = ("mass", "pt", "tau21", "tau32")  # the jet-level residuals of the paper's Fig. 4 and App. B
CONSTITUENT_FEATURES = ("pt", "eta_rel", "phi_rel")  # the constituent-level residuals


class GaussianFit(NamedTuple):
    mu: float  # fitted mean of the core: the shift
    sigma: float  # fitted width of the core: the resolution
    mean: float  # plain mean of all finite residuals (tails included)
    rms: float  # plain standard deviation of all finite residuals (ROOT's "RMS")
    n: int  # number of finite residuals


def gaussian(x, amplitude, mu, sigma):
    """amplitude * exp(-(x - mu)^2 / (2 sigma^2))."""
    return amplitude * np.exp(-0.5 * ((x - mu) / sigma) ** 2)


def robust_gaussian(values: np.ndarray) -> tuple[float, float]:
    """(median, IQR / 1.349): the mean and width of a Gaussian, barely moved by tails."""
    q25, q50, q75 = np.quantile(values, [0.25, 0.5, 0.75])
    return float(q50), float((q75 - q25) / 1.349)


def fit_gaussian(residuals, *, core_quantiles: tuple[float, float] = (0.05, 0.95)) -> GaussianFit:
    """Fit a Gaussian to the core of a residual distribution.

    The histogram between the ``core_quantiles`` of the residuals is fitted
    (``scipy.optimize.curve_fit``, Poisson-weighted bins): a few rare big misses
    then cannot inflate sigma as they would a standard deviation.  The window
    cuts a Gaussian at about +-1.6 sigma, but a fit to the shape, unlike a
    truncated standard deviation, is not biased by that.  ``mean`` and ``rms``
    are plain moments of everything, for comparison.

    Non-finite residuals (NaN where an observable is undefined) are dropped
    first; ``n`` counts what is left.  Degenerate input (all equal, e.g. a
    perfect reconstruction) gives sigma = 0.  If there are too few distinct
    values to fit, or the fit fails to converge, mu and sigma fall back to the
    median and IQR / 1.349.
    """
    values = np.asarray(residuals, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        msg = "no finite residuals to fit (empty input, or every value NaN/inf)"
        raise ValueError(msg)
    lo_q, hi_q = core_quantiles
    if not 0.0 <= lo_q < hi_q <= 1.0:
        msg = f"core_quantiles must satisfy 0 <= low < high <= 1; got {core_quantiles}"
        raise ValueError(msg)
    mean, rms, n = float(values.mean()), float(values.std()), int(values.size)

    lo, hi = np.quantile(values, core_quantiles)
    if hi == lo:  # the core is a single value: a delta function
        return GaussianFit(float(lo), 0.0, mean, rms, n)
    core = values[(values >= lo) & (values <= hi)]
    counts, edges = np.histogram(core, bins=int(np.clip(np.sqrt(core.size), 10, 100)), range=(lo, hi))
    centres = 0.5 * (edges[:-1] + edges[1:])
    mu0, sigma0 = robust_gaussian(values)
    if np.count_nonzero(counts) < 4:  # three parameters need more than three filled bins
        return GaussianFit(mu0, sigma0, mean, rms, n)
    sigma0 = sigma0 if sigma0 > 0 else hi - lo
    try:
        with warnings.catch_warnings():
            # Raised when the covariance cannot be estimated; we use only the best-fit values.
            warnings.simplefilter("ignore", OptimizeWarning)
            (_, mu, sigma), _ = curve_fit(
                gaussian,
                centres,
                counts,
                p0=(counts.max(), mu0, sigma0),
                sigma=np.sqrt(np.maximum(counts, 1.0)),  # Poisson errors; an empty bin still counts as +-1
            )
    except RuntimeError:  # no convergence
        return GaussianFit(mu0, sigma0, mean, rms, n)
    return GaussianFit(float(mu), float(abs(sigma)), mean, rms, n)  # the Gaussian is even in sigma


def check_constituents(constituents, name: str) -> None:
    """An awkward array of constituents with fields pt, eta, phi, else a clear error naming ``name``."""
    if not isinstance(constituents, ak.Array):
        msg = f"{name} must be an awkward array of constituents (e.g. jets.constituents); got {type(constituents)}"
        raise TypeError(msg)
    missing = [f for f in ("pt", "eta", "phi") if f not in constituents.fields]
    if missing:
        msg = f"{name} lacks constituent fields {missing}; available fields: {constituents.fields}"
        raise ValueError(msg)


def _check_same_jets(original: ak.Array, reconstructed: ak.Array) -> None:
    if len(original) != len(reconstructed):
        msg = f"original has {len(original)} jets but reconstructed has {len(reconstructed)}"
        raise BadDataError(msg)


def relative_coordinates(constituents: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """Flat (eta_rel, phi_rel) of every constituent, relative to its jet's summed four-vector."""
    axis = jet_kinematics(constituents)
    counts = ak.to_numpy(ak.num(constituents, axis=1))
    eta, phi = (ak.to_numpy(ak.flatten(constituents[f], axis=1)).astype(np.float64) for f in ("eta", "phi"))
    return eta - np.repeat(axis["eta"], counts), delta_phi(phi, np.repeat(axis["phi"], counts))


def constituent_residuals(original: ak.Array, reconstructed: ak.Array) -> dict[str, np.ndarray]:
    """Per constituent: reconstructed - original of ``pt`` [GeV], ``eta_rel`` and ``phi_rel``.

    ``original`` and ``reconstructed`` are physical constituents (fields pt,
    eta, phi), matched by position: a tokenizer keeps each constituent in its
    slot, so both are ordered the same way by construction.  Every jet must
    have the same multiplicity in both (:class:`BadDataError` otherwise).

    eta_rel and phi_rel are the records' own ``eta_rel``/``phi_rel`` fields if
    both arrays have them; otherwise each jet's constituents are taken
    relative to that jet's own axis, the sum of its (massless) constituent
    four-vectors — the reconstructed jet relative to the reconstructed axis.
    A rigid shift of a whole jet therefore leaves these residuals at 0.
    Returns flat arrays, jet after jet.
    """
    check_constituents(original, "original")
    check_constituents(reconstructed, "reconstructed")
    _check_same_jets(original, reconstructed)
    n_orig = ak.to_numpy(ak.num(original, axis=1))
    n_reco = ak.to_numpy(ak.num(reconstructed, axis=1))
    differ = np.flatnonzero(n_orig != n_reco)
    if differ.size:
        shown = ", ".join(f"jet {i}: {n_orig[i]} vs {n_reco[i]}" for i in differ[:5])
        msg = (
            f"constituents are matched by position, but {differ.size} jets have different multiplicities "
            f"in original and reconstructed ({shown}{', ...' if differ.size > 5 else ''})"
        )
        raise BadDataError(msg)

    def flat(constituents, field):
        return ak.to_numpy(ak.flatten(constituents[field], axis=1)).astype(np.float64)

    given = all(f in c.fields for c in (original, reconstructed) for f in ("eta_rel", "phi_rel"))
    if given:
        rel_orig = flat(original, "eta_rel"), flat(original, "phi_rel")
        rel_reco = flat(reconstructed, "eta_rel"), flat(reconstructed, "phi_rel")
    else:
        rel_orig, rel_reco = relative_coordinates(original), relative_coordinates(reconstructed)
    return {
        "pt": flat(reconstructed, "pt") - flat(original, "pt"),
        "eta_rel": rel_reco[0] - rel_orig[0],
        "phi_rel": delta_phi(rel_reco[1], rel_orig[1]),
    }


def jet_residuals(original: ak.Array, reconstructed: ak.Array) -> dict[str, np.ndarray]:
    """Per jet: reconstructed - original of ``mass`` and ``pt`` [GeV], ``tau21`` and ``tau32``.

    Takes physical constituents (fields pt, eta, phi) like
    :func:`omnijet_lib.observables.jet_observables`, which computes the
    observables; multiplicities may differ.  A ratio is undefined for a jet
    whose denominator vanishes (tau21 with tau1 = 0, a jet of one
    constituent; tau32 with tau2 = 0); there, in either jet, the residual is
    NaN, which :func:`fit_gaussian` drops.
    """
    check_constituents(original, "original")
    check_constituents(reconstructed, "reconstructed")
    _check_same_jets(original, reconstructed)
    obs_orig, obs_reco = jet_observables(original), jet_observables(reconstructed)
    residuals = {name: obs_reco[name] - obs_orig[name] for name in ("mass", "pt")}
    for name, denominator in (("tau21", "tau1"), ("tau32", "tau2")):
        defined = (obs_orig[denominator] > 0) & (obs_reco[denominator] > 0)
        residuals[name] = np.where(defined, obs_reco[name] - obs_orig[name], np.nan)
    return residuals


def resolution_table(
    residuals: dict[str, dict[str, np.ndarray]], *, core_quantiles: tuple[float, float] = (0.05, 0.95)
) -> list[dict]:
    """One row per tokenizer and observable: its fitted resolution.

    ``residuals[tokenizer][observable]`` are residual arrays (from
    :func:`constituent_residuals` / :func:`jet_residuals`).  Rows are plain
    dicts ``{"tokenizer", "observable", "sigma", "shift", "mean", "rms", "n"}``
    with ``shift`` the fitted Gaussian mean; ready for ``metrics.json`` or a
    pandas DataFrame.
    """
    rows = []
    for tokenizer, by_observable in residuals.items():
        for observable, values in by_observable.items():
            fit = fit_gaussian(values, core_quantiles=core_quantiles)
            rows.append(
                {
                    "tokenizer": tokenizer,
                    "observable": observable,
                    "sigma": fit.sigma,
                    "shift": fit.mu,
                    "mean": fit.mean,
                    "rms": fit.rms,
                    "n": fit.n,
                }
            )
    return rows
