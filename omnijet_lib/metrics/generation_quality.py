"""How close generated jets come to real ones (paper section III.2 and appendix A.5).

Generated jets are compared with *reconstructed* real jets -- real jets passed
through the same tokenizer -- so that what is measured is the generative
model, not the tokenizer.  Both are decoded alike (axis at eta = phi = 0).

- :func:`jet_distributions`: the observables of the paper's figures, per
  constituent (pT, eta_rel, phi_rel) and per jet (multiplicity, mass, pT,
  tau21, tau32), as :class:`~omnijet_lib.metrics.distributions.Distribution`
  (:func:`~omnijet_lib.metrics.distributions.wasserstein_distances`, shared with
  showers, gives the 1-D Wasserstein distance of each);
- :func:`generation_monitor`: W1 of mass and multiplicity of a small generated
  sample, after every training epoch (a ``best_by`` that tracks generation);
- :func:`generated_vs_real_auc`: the classifier test -- a DeepSets with
  particle MLP 10-10-10 learns to tell generated from reconstructed jets,
  split 0.6/0.2/0.2, best epoch by validation loss; its test ROC AUC is 0.5
  when it cannot (paper: 0.54 for top + QCD).

The metrics the field reports next to it, as defined by Kansal et al.,
"Evaluating generative models in high energy physics", Phys. Rev. D 107
(2023) 076017, arXiv:2211.10295, and computed as by their ``jetnet`` package
(``jetnet.evaluation`` 0.2.5: ``w1m``, ``w1p``, ``fpd``, ``kpd``) -- re-written
here in numpy/scipy, as ``jetnet`` pulls in energyflow, coffea and numba:

- :func:`wasserstein_with_error`: 1-D Wasserstein distance, mean and standard
  deviation over random batches (W1m for the jet mass, W1p per constituent
  feature);
- :func:`frechet_physics_distance`: FPD, the Frechet distance of Gaussians
  fitted to jet-level features, extrapolated to infinitely many jets;
- :func:`kernel_physics_distance`: KPD, the unbiased MMD^2 with a polynomial
  kernel, median over batches (:func:`polynomial_mmd2` is one batch);
- :func:`jetnet_metrics`: all of them from two sets of constituents.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import awkward as ak
import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.stats import wasserstein_distance

from omnijet_lib.data.jets import Jets
from omnijet_lib.errors import BadDataError
from omnijet_lib.generation import decode_generated_jets, generate_sequences
from omnijet_lib.metrics.classifier_test import train_classifier
from omnijet_lib.metrics.distributions import Distribution
from omnijet_lib.metrics.resolution import check_constituents, relative_coordinates
from omnijet_lib.models.classifiers import DeepSets, DeepSetsConfig
from omnijet_lib.models.gpt import GPT
from omnijet_lib.observables import jet_observables
from omnijet_lib.tokenizers.base import Tokenizer
from omnijet_lib.training import TrainingConfig

# observable -> axis label, in the order of the paper's figures
OBSERVABLES = {
    "pt": r"constituent $p_\mathrm{T}$ [GeV]",
    "eta_rel": r"constituent $\eta_\mathrm{rel}$",
    "phi_rel": r"constituent $\phi_\mathrm{rel}$",
    "multiplicity": "constituents per jet",
    "jet_mass": r"jet mass [GeV]",
    "jet_pt": r"jet $p_\mathrm{T}$ [GeV]",
    "jet_tau21": r"$\tau_{21}$",
    "jet_tau32": r"$\tau_{32}$",
}


def jet_distributions(constituents: ak.Array) -> dict[str, Distribution]:
    """The :data:`OBSERVABLES` of physical constituents (fields pt, eta, phi), each a :class:`Distribution`.

    Constituent observables are flat over all jets; eta_rel and phi_rel are
    relative to each jet's summed four-vector.  tau21 (tau32) is left out for
    jets where tau1 (tau2) vanishes, as it is undefined there.
    """
    jets = jet_observables(constituents)
    eta_rel, phi_rel = relative_coordinates(constituents)
    values = {
        "pt": ak.to_numpy(ak.flatten(constituents["pt"], axis=1)).astype(np.float64),
        "eta_rel": eta_rel,
        "phi_rel": phi_rel,
        "multiplicity": jets["multiplicity"].astype(np.float64),
        "jet_mass": jets["mass"],
        "jet_pt": jets["pt"],
        "jet_tau21": jets["tau21"][jets["tau1"] > 0],
        "jet_tau32": jets["tau32"][jets["tau2"] > 0],
    }
    return {name: Distribution(v) for name, v in values.items()}


def generation_monitor(
    tokenizer: Tokenizer,
    reference: Jets,
    *,
    n_jets: int = 1000,
    batch_size: int = 256,
    seed: int = 0,
    multiplicities: np.ndarray | None = None,
    jet_pt: np.ndarray | None = None,
) -> Callable[[GPT], dict[str, float]]:
    """An ``evaluate`` for :func:`~omnijet_lib.models.gpt.fit_gpt`: a small generated sample against ``reference``, every epoch.

    The validation loss measures next-token prediction on *real* prefixes; it
    says little about what the model makes from its *own* (notebook 04's
    exposure-bias diagnostic), so the epoch it picks need not generate best.
    This generates ``n_jets`` jets with the same seed each time (the epochs then
    differ by the model alone), decodes them with ``tokenizer`` and returns the
    1-D Wasserstein distances to the ``reference`` jets (decoded real jets, e.g.
    the validation split) of the jet mass, ``sample_w1m`` [GeV], and of the
    multiplicity, ``sample_w1n``.  ``TrainingConfig.best_by`` may name either.
    ``multiplicities`` and ``jet_pt`` go to :func:`~omnijet_lib.generation.generate_sequences`.
    """
    if n_jets < MIN_SAMPLES or len(reference) < MIN_SAMPLES:
        msg = f"a generation monitor needs at least {MIN_SAMPLES} generated and reference jets, got {n_jets} and {len(reference)}"
        raise ValueError(msg)

    def evaluate(model: GPT) -> dict[str, float]:
        sequences = generate_sequences(
            model, n_jets, batch_size=batch_size, seed=seed, progress=False, multiplicities=multiplicities,
            jet_pt=jet_pt,
        )  # fmt: skip
        jets, _ = decode_generated_jets(sequences, tokenizer)
        return {
            "sample_w1m": float(wasserstein_distance(jets.mass, reference.mass)),
            "sample_w1n": float(wasserstein_distance(jets.n_constituents, reference.n_constituents)),
        }

    return evaluate


def generated_vs_real_auc(
    generated: tuple[np.ndarray, np.ndarray],
    real: tuple[np.ndarray, np.ndarray],
    *,
    training: TrainingConfig,
    run_dir: str | os.PathLike,
    split_seed: int = 0,
    particle_layers: tuple[int, ...] = (10, 10, 10),
    progress: bool = True,
) -> dict[str, float]:
    """Classifier test of generated (label 1) vs real (label 0) jets; ``(features, mask)`` each.

    The two samples enter in equal numbers (the larger is cut at random, by
    ``split_seed``), so 0.5 is the AUC of a classifier that cannot tell them
    apart and no class imbalance can fake a better one.  Returns ``auc``,
    ``accuracy`` (test split), ``best_epoch`` and the number of jets per sample.
    """
    (gen_x, gen_mask), (real_x, real_mask) = generated, real
    if gen_x.shape[1:] != real_x.shape[1:]:
        msg = f"generated features {gen_x.shape} and real features {real_x.shape} differ beyond the jet axis"
        raise ValueError(msg)
    n = min(len(gen_x), len(real_x))
    rng = np.random.default_rng(split_seed)
    gen_pick, real_pick = (np.sort(rng.permutation(len(x))[:n]) for x in (gen_x, real_x))
    x = np.concatenate([real_x[real_pick], gen_x[gen_pick]])
    mask = np.concatenate([real_mask[real_pick], gen_mask[gen_pick]])
    labels = np.repeat([0, 1], n)
    model = DeepSets(DeepSetsConfig(n_features=x.shape[-1], particle_layers=particle_layers, n_classes=2))
    result = train_classifier(
        x, mask, labels, model=model, training=training, run_dir=run_dir, split_seed=split_seed, progress=progress
    )
    return {"auc": result.auc, "accuracy": result.accuracy, "best_epoch": result.best_epoch, "n_per_sample": n}


# --- The JetNet metrics: W1m, W1p, FPD, KPD -------------------------------------------------------
#
# Definitions of Kansal et al., arXiv:2211.10295 (Phys. Rev. D 107, 076017), computed as
# jetnet.evaluation 0.2.5 computes them: batches are drawn with replacement, FPD and KPD
# features are divided by the real sample's largest |value|, and the defaults are jetnet's.
# Every distance comes back as (value, error); jetnet_metrics stores each pair as
# {"value": v, "error": e}, plain floats, so the result goes straight into JSON.

MIN_SAMPLES = 20  # fewer jets (or values) than this give no distance worth reporting
FPD_KPD_FEATURES = ("mass", "pt", "multiplicity", "tau21", "tau32")  # columns of fpd_kpd_features
W1P_FEATURES = ("pt", "eta_rel", "phi_rel")  # constituent features of W1p


def wasserstein_with_error(
    real, generated, *, n_batches: int = 5, batch_size: int = 50_000, seed: int = 0
) -> tuple[float, float]:
    """1-D Wasserstein distance W1 of two samples: (mean, standard deviation) over ``n_batches``.

    Each batch draws ``batch_size`` values from each sample at random, with
    replacement (jetnet's ``w1m``/``w1p``: 5 batches of 50,000); W1 is
    ``scipy.stats.wasserstein_distance`` of the two draws, in the units of the
    values.  A batch never exceeds the smaller sample: for small samples each
    batch is a bootstrap resample and the spread a bootstrap error.  Values
    must be finite, at least :data:`MIN_SAMPLES` of each.
    """
    real, generated = _values(real, "real"), _values(generated, "generated")
    _check_batching(n_batches, batch_size, min_batches=2)
    size = min(batch_size, len(real), len(generated))
    rng = np.random.default_rng(seed)
    distances = [
        wasserstein_distance(real[rng.choice(len(real), size=size)], generated[rng.choice(len(generated), size=size)])
        for _ in range(n_batches)
    ]
    return float(np.mean(distances)), float(np.std(distances))


def frechet_physics_distance(
    real_features,
    generated_features,
    *,
    min_samples: int = 20_000,
    max_samples: int = 50_000,
    n_points: int = 10,
    n_batches: int = 20,
    normalise: bool = True,
    seed: int = 0,
) -> tuple[float, float]:
    """Frechet physics distance (FPD) of two sets of jet features, shape (N, d): (value, error).

    The Frechet distance of Gaussians fitted to the two samples,
    ``||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` (means ``mu``,
    covariances ``S``), is biased upwards at finite N by an amount linear in
    1/N.  As defined by Kansal et al. (and as jetnet's ``fpd``), it is
    measured at ``n_points`` batch sizes N evenly spaced in 1/N from
    ``min_samples`` to ``max_samples``, each the mean of ``n_batches`` draws
    with replacement, and a straight line in 1/N (intercept and slope >= 0)
    extrapolates it to N -> infinity: the value is the intercept and the error
    its standard error from the fit.

    With ``normalise`` each feature is first divided by the real sample's
    largest |value| (jetnet's normalisation), so FPD has no units and weighs
    features alike -- but depends on the real sample's extremes, which grow
    with its size: compare FPDs measured against the same real sample.  If
    the smaller sample has fewer than ``max_samples`` rows, both batch sizes
    shrink by the same factor (jetnet's 20,000 and 50,000 become 160 and 400
    for 400 jets).

    The limit is the distance between the two *samples'* moments, so the error
    (of the fit only) leaves out their own finite-sample fluctuation: two real
    samples of one process give a small positive FPD, the floor to compare with.
    """
    real, generated = _paired_features(real_features, generated_features)
    if not 2 <= min_samples < max_samples:
        msg = f"need 2 <= min_samples < max_samples; got min_samples={min_samples}, max_samples={max_samples}"
        raise ValueError(msg)
    if n_points < 3 or n_batches < 1:
        msg = f"need n_points >= 3 (a line with an error) and n_batches >= 1; got {n_points}, {n_batches}"
        raise ValueError(msg)
    if normalise:
        real, generated = _normalise(real, generated)
    shrink = min(1.0, min(len(real), len(generated)) / max_samples)
    smallest, largest = (max(2, round(n * shrink)) for n in (min_samples, max_samples))
    sizes = np.rint(1.0 / np.linspace(1.0 / smallest, 1.0 / largest, n_points)).astype(int)
    rng = np.random.default_rng(seed)
    means = []
    for size in sizes:
        distances = []
        for _ in range(n_batches):
            a = real[rng.choice(len(real), size=size)]
            b = generated[rng.choice(len(generated), size=size)]
            distances.append(_frechet_distance(a.mean(axis=0), _covariance(a), b.mean(axis=0), _covariance(b)))
        means.append(np.mean(distances))
    with warnings.catch_warnings():  # a perfect line has no covariance estimate: the error is then inf
        warnings.simplefilter("ignore", OptimizeWarning)
        params, covariance = curve_fit(_line, 1.0 / sizes, means, bounds=([0.0, 0.0], [np.inf, np.inf]))
    return float(params[0]), float(np.sqrt(covariance[0, 0]))


def polynomial_mmd2(x, y, *, degree: int = 4) -> float:
    """Unbiased estimate of the squared maximum mean discrepancy of samples x (m, d) and y (n, d).

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m-1)) + sum_{i != j} k(y_i, y_j) / (n (n-1))
    - 2 sum_{i, j} k(x_i, y_j) / (m n)  (Gretton et al., JMLR 13 (2012) 723, eq. 3),
    with the polynomial kernel k(a, b) = (a.b / d + 1)^degree.  It can be
    slightly negative when the distributions agree.  One batch of
    :func:`kernel_physics_distance`.
    """
    x, y = (np.asarray(v, dtype=np.float64) for v in (x, y))
    x, y = (v[:, None] if v.ndim == 1 else v for v in (x, y))  # 1-D: one feature
    if x.ndim != 2 or x.shape[1:] != y.shape[1:] or len(x) < 2 or len(y) < 2:
        msg = f"x and y need >= 2 rows and the same number of features; got shapes {x.shape} and {y.shape}"
        raise ValueError(msg)
    d = x.shape[1]

    def kernel(base):  # (a.b / d + 1)^degree by in-place products: a float power is several times slower
        base /= d
        base += 1.0
        k = np.ones_like(base)
        for _ in range(degree):
            k *= base
        return k

    def gram_sum(a, b):  # by blocks of rows: never the whole Gram matrix (200 MB for 5,000 jets) in memory
        return sum(kernel(a[i : i + 512] @ b.T).sum() for i in range(0, len(a), 512))

    def off_diagonal_mean(a):
        diagonal = kernel(np.einsum("ij,ij->i", a, a)).sum()
        return (gram_sum(a, a) - diagonal) / (len(a) * (len(a) - 1))

    return float(off_diagonal_mean(x) + off_diagonal_mean(y) - 2.0 * gram_sum(x, y) / (len(x) * len(y)))


def kernel_physics_distance(
    real_features,
    generated_features,
    *,
    n_batches: int = 10,
    batch_size: int = 5_000,
    degree: int = 4,
    normalise: bool = True,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel physics distance (KPD) of two sets of jet features, shape (N, d): (median, error).

    KPD is the unbiased MMD^2 with a polynomial kernel (:func:`polynomial_mmd2`)
    on ``n_batches`` batches of ``batch_size`` rows drawn with replacement
    (batch i by ``numpy.random.default_rng(seed + 1000 i)``), as Kansal et al.
    define it and jetnet's ``kpd`` computes it: the value is the median over
    batches, the error half the spread between their 16.275th and 83.725th
    percentiles (a +-1 sigma half-width; jetnet's ``iqr(rng=(16.275, 83.725)) / 2``).

    ``degree`` (an integer) 4 is the kernel jetnet's code uses; the KID of
    image generation (Binkowski et al., arXiv:1801.01401) uses 3.
    ``normalise`` divides each feature by the real sample's largest |value|,
    as jetnet does.  A batch never exceeds the smaller sample; for small
    samples the error, like FPD's, mostly measures the resampling of the same jets.
    """
    real, generated = _paired_features(real_features, generated_features)
    _check_batching(n_batches, batch_size, min_batches=2)
    if normalise:
        real, generated = _normalise(real, generated)
    size = min(batch_size, len(real), len(generated))
    values = []
    for i in range(n_batches):
        rng = np.random.default_rng(seed + 1000 * i)
        a = real[rng.choice(len(real), size=size)]
        b = generated[rng.choice(len(generated), size=size)]
        values.append(polynomial_mmd2(a, b, degree=degree))
    low, high = np.percentile(values, [16.275, 83.725])
    return float(np.median(values)), float((high - low) / 2)


def fpd_kpd_features(constituents: ak.Array) -> np.ndarray:
    """Jet features for FPD and KPD, shape (N', 5): the columns :data:`FPD_KPD_FEATURES`.

    jetnet recommends 36 energy-flow polynomials for JetNet; here they are the
    jet observables of the paper's figures instead (mass and pT in GeV,
    multiplicity, tau21, tau32 of :func:`omnijet_lib.observables.jet_observables`).
    Jets whose tau21 or tau32 is undefined (tau1 or tau2 = 0: at most two
    constituents) are left out, in every sample alike, so N' <= N.
    """
    return _fpd_kpd_rows(jet_observables(_constituents(constituents, "constituents")))


def jetnet_metrics(
    real_constituents: ak.Array,
    generated_constituents: ak.Array,
    *,
    seed: int = 0,
    w1_batches: int = 5,
    w1_batch_size: int = 50_000,
    fpd_min_samples: int = 20_000,
    fpd_max_samples: int = 50_000,
    fpd_points: int = 10,
    fpd_batches: int = 20,
    kpd_batches: int = 10,
    kpd_batch_size: int = 5_000,
    kpd_degree: int = 4,
) -> dict:
    """W1m, W1p, FPD and KPD of generated against real jets, from their constituents.

    Constituents are awkward arrays with fields pt [GeV], eta, phi (e.g.
    ``Jets.constituents``), at least :data:`MIN_SAMPLES` jets each, every jet
    with a constituent and every value finite.  Returns, every number a
    plain float, every distance a ``{"value": v, "error": e}``::

        {"w1m": {...},                     # jet mass [GeV]
         "w1p": {"pt": {...},              # constituent pT [GeV]
                 "eta_rel": {...}, "phi_rel": {...},
                 "mean": {...}},           # mean of the three per batch
         "fpd": {...}, "kpd": {...},       # on fpd_kpd_features (no units)
         "n_jets": {"real": N_r, "generated": N_g,
                    "real_fpd_kpd": N'_r, "generated_fpd_kpd": N'_g}}

    W1m and W1p follow jetnet's ``w1m``/``w1p``: each batch draws
    ``w1_batch_size`` jets (capped at the smaller sample) and compares their
    masses, or all their constituents; value and error are the mean and
    standard deviation over ``w1_batches``.  Unlike JetNet's relative pT,
    constituent pT is in GeV here, and eta_rel, phi_rel are relative to the
    jet's summed four-vector.  The W1p mean adds GeV to radians; jetnet
    itself dropped such averages, so quote the three features.  FPD and KPD:
    :func:`frechet_physics_distance` and :func:`kernel_physics_distance` on
    :func:`fpd_kpd_features` (not JetNet's EFPs, so the numbers compare with
    this project's, not with the JetNet tables).  Every value has a floor from
    the finite samples: quote next to it the metrics of two real samples of
    the same sizes.
    """
    real = _constituents(real_constituents, "real_constituents")
    generated = _constituents(generated_constituents, "generated_constituents")
    real_jets, generated_jets = jet_observables(real), jet_observables(generated)
    mass = wasserstein_with_error(
        real_jets["mass"], generated_jets["mass"], n_batches=w1_batches, batch_size=w1_batch_size, seed=seed
    )
    per_constituent = _w1_per_constituent(real, generated, n_batches=w1_batches, batch_size=w1_batch_size, seed=seed)
    real_rows = _features(_fpd_kpd_rows(real_jets), "real jet features (jets with defined tau21 and tau32)")
    generated_rows = _features(
        _fpd_kpd_rows(generated_jets), "generated jet features (jets with defined tau21 and tau32)"
    )
    fpd = frechet_physics_distance(
        real_rows,
        generated_rows,
        min_samples=fpd_min_samples,
        max_samples=fpd_max_samples,
        n_points=fpd_points,
        n_batches=fpd_batches,
        seed=seed,
    )
    kpd = kernel_physics_distance(
        real_rows, generated_rows, n_batches=kpd_batches, batch_size=kpd_batch_size, degree=kpd_degree, seed=seed
    )
    return {
        "w1m": _pair(*mass),
        "w1p": {name: _pair(*pair) for name, pair in per_constituent.items()},
        "fpd": _pair(*fpd),
        "kpd": _pair(*kpd),
        "n_jets": {
            "real": len(real),
            "generated": len(generated),
            "real_fpd_kpd": len(real_rows),
            "generated_fpd_kpd": len(generated_rows),
        },
    }


def _pair(value: float, error: float) -> dict[str, float]:
    return {"value": float(value), "error": float(error)}


def _line(x, intercept, slope):
    return intercept + slope * x


def _covariance(sample: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.cov(sample, rowvar=False))


def _frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)): squared Frechet distance of two Gaussians.

    Tr (sigma1 sigma2)^(1/2) is the sum of the square roots of the eigenvalues
    of sigma1 sigma2 -- real and >= 0, as the product is similar to the positive
    semi-definite sigma1^(1/2) sigma2 sigma1^(1/2) -- the trace of
    ``scipy.linalg.sqrtm(sigma1 @ sigma2)`` without its trouble with singular products.
    """
    eigenvalues = np.linalg.eigvals(sigma1 @ sigma2).real  # imaginary parts are rounding
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.sqrt(np.clip(eigenvalues, 0, None)).sum())


def _normalise(real: np.ndarray, generated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both samples divided, feature by feature, by the real sample's largest |value| (1 where that is 0)."""
    scale = np.abs(real).max(axis=0)
    scale[scale == 0] = 1.0
    return real / scale, generated / scale


def _check_sample(array: np.ndarray, name: str, unit: str = "values") -> None:
    if len(array) < MIN_SAMPLES:
        msg = f"{name} holds {len(array)} {unit}; at least {MIN_SAMPLES} are needed for a distance and its error"
        raise ValueError(msg)
    bad = ~np.isfinite(array)
    if bad.any():
        where = np.argwhere(bad)[0]
        place = f"row {where[0]}" + (f", feature {where[1]}" if array.ndim == 2 else "")
        msg = f"{int(bad.sum())} non-finite (NaN/inf) values in {name}, the first at {place}"
        raise BadDataError(msg)


def _values(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        msg = f"{name} must be 1-D (one value per jet or constituent); got shape {array.shape}"
        raise ValueError(msg)
    _check_sample(array, name)
    return array


def _features(features, name: str) -> np.ndarray:
    """(N, d) float64 features; a 1-D array is one feature."""
    array = np.asarray(features, dtype=np.float64)
    array = array[:, None] if array.ndim == 1 else array
    if array.ndim != 2:
        msg = f"{name} must be (jets, features); got shape {array.shape}"
        raise ValueError(msg)
    _check_sample(array, name, unit="jets")
    return array


def _paired_features(real_features, generated_features) -> tuple[np.ndarray, np.ndarray]:
    real, generated = _features(real_features, "real_features"), _features(generated_features, "generated_features")
    if real.shape[1] != generated.shape[1]:
        msg = f"real_features have {real.shape[1]} features per jet but generated_features have {generated.shape[1]}"
        raise ValueError(msg)
    return real, generated


def _check_batching(n_batches: int, batch_size: int, *, min_batches: int) -> None:
    if n_batches < min_batches or batch_size < 2:
        msg = f"need n_batches >= {min_batches} (for an error) and batch_size >= 2; got {n_batches}, {batch_size}"
        raise ValueError(msg)


def _constituents(constituents, name: str) -> ak.Array:
    """The constituents, checked: fields pt, eta, phi, >= MIN_SAMPLES jets, none empty, all finite."""
    check_constituents(constituents, name)
    if len(constituents) < MIN_SAMPLES:
        msg = f"{name} holds {len(constituents)} jets; at least {MIN_SAMPLES} are needed for a distance and its error"
        raise ValueError(msg)
    counts = ak.to_numpy(ak.num(constituents, axis=1))
    if (counts == 0).any():
        msg = f"{int((counts == 0).sum())} jet(s) without constituents in {name} (first: jet {np.argmax(counts == 0)})"
        raise BadDataError(msg)
    jet_of = np.repeat(np.arange(len(counts)), counts)
    for field in ("pt", "eta", "phi"):
        bad = ~np.isfinite(ak.to_numpy(ak.flatten(constituents[field], axis=1)))
        if bad.any():
            first = jet_of[np.argmax(bad)]
            msg = f"{int(bad.sum())} non-finite (NaN/inf) constituent {field} values in {name}, first in jet {first}"
            raise BadDataError(msg)
    return constituents


def _fpd_kpd_rows(jets: dict[str, np.ndarray]) -> np.ndarray:
    """The FPD_KPD_FEATURES of the jets (from jet_observables) whose tau21 and tau32 are defined."""
    defined = (jets["tau1"] > 0) & (jets["tau2"] > 0)
    return np.column_stack([np.asarray(jets[f], dtype=np.float64)[defined] for f in FPD_KPD_FEATURES])


def _w1_per_constituent(
    real: ak.Array, generated: ak.Array, *, n_batches: int, batch_size: int, seed: int
) -> dict[str, tuple[float, float]]:
    """W1 of each of W1P_FEATURES, and their mean, over batches of whole jets (jetnet's ``w1p``)."""
    _check_batching(n_batches, batch_size, min_batches=2)
    samples = []
    for constituents in (real, generated):
        eta_rel, phi_rel = relative_coordinates(constituents)
        pt = ak.to_numpy(ak.flatten(constituents["pt"], axis=1)).astype(np.float64)
        counts = ak.to_numpy(ak.num(constituents, axis=1))
        samples.append((np.column_stack([pt, eta_rel, phi_rel]), counts, np.cumsum(counts) - counts))
    size = min(batch_size, len(real), len(generated))
    rng = np.random.default_rng(seed)
    distances = []  # (n_batches, 3)
    for _ in range(n_batches):
        draws = []
        for values, counts, offsets in samples:
            jets = rng.choice(len(counts), size=size)
            n = counts[jets]
            # the rows of the chosen jets' constituents, jet after jet
            rows = np.repeat(offsets[jets] - (np.cumsum(n) - n), n) + np.arange(n.sum())
            draws.append(values[rows])
        distances.append([wasserstein_distance(draws[0][:, i], draws[1][:, i]) for i in range(len(W1P_FEATURES))])
    distances = np.asarray(distances)
    per_batch_mean = distances.mean(axis=1)
    result = {name: (distances[:, i].mean(), distances[:, i].std()) for i, name in enumerate(W1P_FEATURES)}
    return result | {"mean": (per_batch_mean.mean(), per_batch_mean.std())}
