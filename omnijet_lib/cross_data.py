"""Cross-data pre-training: the jet GPT pre-trained on one jet sample (domain A), then trained on another (B).

OmniJet-α's next step pre-trains the generative backbone on many jets of one kind (real
collision data, e.g. the Aspen Open Jets) and fine-tunes it on another (simulated top and QCD
jets).  Here domain A is what can be made offline: generic dijets of 300-1500 GeV seen through
a CMS-like detector response (``omnijet_lib.data.pythia_jets``, process ``"dijet"``); domain B
is notebook 01's generator-level top and QCD jets.  The two differ in pT range, flavour mix,
detector smearing and acceptance: a real domain shift.  An Aspen Open Jets file imported with
``omnijet import-aspen-open-jets`` can stand in for A in the same chain (docs/jets.md).

This module holds what notebook 09 needs beyond the single-domain chain of
:mod:`omnijet_lib.workflows`: domain A's jets and tokens, the tokenizer fitted on A (or on A and
B together), the training subsets of B, and the scores of a generator on B (classifier AUC, the
jet-mass and multiplicity Wasserstein distances and the Frechet physics distance).  Training
itself is :func:`omnijet_lib.workflows.fit_jet_generator` with ``init_from`` / ``strategy``
(``omnijet_lib.training.gpt``).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from omnijet_lib.data.jet_files import read_jets
from omnijet_lib.data.jets import Jets, concatenate
from omnijet_lib.data.preprocessing import preprocess
from omnijet_lib.data.pythia_jets import jet_dataset
from omnijet_lib.data.splits import split_indices
from omnijet_lib.generation import decode_generated_jets
from omnijet_lib.metrics.distributions import wasserstein_distances
from omnijet_lib.metrics.generation_quality import (
    MIN_SAMPLES,
    fpd_kpd_features,
    frechet_physics_distance,
    generated_vs_real_auc,
    jet_distributions,
)
from omnijet_lib.tokenizers.token_dataset import TokenDataset
from omnijet_lib.tokenizers.token_files import tokenized
from omnijet_lib.training import TrainingConfig
from omnijet_lib.workflows import JetFeatures, JetGenerator

DOMAIN_A = "dijet"  # the process of domain A's jets
TOKENIZER_DATA = ("a", "both")  # the tokenizer fitted on domain A alone, or on A and B together


def tokenizer_name(tokenizer: str, tokenizer_data: str) -> str:
    """The saved name of a cross-data tokenizer ``tokenizer`` (e.g. "conditional-512") fitted on ``tokenizer_data``."""
    if tokenizer_data not in TOKENIZER_DATA:
        msg = f"tokenizer_data must be one of {TOKENIZER_DATA} (domain A, or A and B together); got {tokenizer_data!r}"
        raise ValueError(msg)
    return f"{DOMAIN_A}{'' if tokenizer_data == 'a' else '+topqcd'}-{tokenizer}"


def domain_a_file(
    *,
    n_jets_a: int,
    seed: int,
    data_dir: str | os.PathLike,
    n_workers: int | None = None,
    a_file: str | os.PathLike | None = None,
) -> Path:
    """Domain A's jet file: ``a_file`` if given (any file in the jet schema, e.g. Aspen Open Jets imported with
    ``omnijet import-aspen-open-jets``; all its jets), else ``n_jets_a`` generic detector-level dijets, generated
    once and reused."""
    if a_file is not None:
        path = Path(a_file)
        if not path.exists():
            msg = f"domain A's jet file not found: {path} (None: generate detector-level dijets)"
            raise FileNotFoundError(msg)
        return path
    return jet_dataset(n_jets_a, seed=seed, data_dir=data_dir, n_workers=n_workers, processes=(DOMAIN_A,))[DOMAIN_A]


def tokenizer_features(
    tokenizer_data: str,
    *,
    n_jets_a: int,
    n_jets: int,
    seed: int,
    data_dir: str | os.PathLike,
    n_workers: int | None = None,
    a_file: str | os.PathLike | None = None,
) -> JetFeatures:
    """The jets a cross-data tokenizer is fitted on, pre-processed and split 60/20/20 by ``seed``: domain A's
    (``tokenizer_data="a"``), or A's with B's top and QCD jets (``"both"``, ``n_jets`` per class)."""
    tokenizer_name("", tokenizer_data)  # checks the choice
    jets = read_jets(domain_a_file(n_jets_a=n_jets_a, seed=seed, data_dir=data_dir, n_workers=n_workers, a_file=a_file))
    if tokenizer_data == "both":
        paths = jet_dataset(n_jets, seed=seed, data_dir=data_dir, n_workers=n_workers)
        jets = concatenate([jets, read_jets(paths["top"]), read_jets(paths["qcd"])])
    return JetFeatures(jets, preprocess(jets), *split_indices(len(jets), seed=seed))


def domain_a_tokens(
    *,
    n_jets_a: int,
    seed: int,
    data_dir: str | os.PathLike,
    tokenizer_file: str | os.PathLike,
    token_dir: str | os.PathLike,
    n_workers: int | None = None,
    a_file: str | os.PathLike | None = None,
) -> tuple[TokenDataset, np.ndarray, np.ndarray, np.ndarray]:
    """Domain A's jets tokenized once with ``tokenizer_file``, and their 60/20/20 split by ``seed``."""
    path = domain_a_file(n_jets_a=n_jets_a, seed=seed, data_dir=data_dir, n_workers=n_workers, a_file=a_file)
    dataset = TokenDataset([tokenized(path, tokenizer_file, token_dir)])
    return (dataset, *split_indices(len(dataset), seed=seed))


def training_subset(train_idx: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` jets drawn at random (by ``seed``) from ``train_idx``, sorted; all of it at its size.

    Any part of a split, not only the training part: its indices are sorted, top jets first, so
    its first ``size`` jets would not be a fair sample."""
    if not 1 <= size <= len(train_idx):
        msg = f"a training size of {size} jets: the training split holds {len(train_idx)}"
        raise ValueError(msg)
    return np.sort(np.random.default_rng(seed).choice(train_idx, size, replace=False))


def generation_scores(
    generator: JetGenerator,
    real_sequences: np.ndarray,
    *,
    n_generated: int,
    seed: int,
    classifier_epochs: int,
    run_dir: str | os.PathLike,
    batch_size: int = 256,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, float]:
    """How well ``generator`` makes the jets of ``real_sequences`` (tokenized real test jets of its domain).

    ``n_generated`` jets are generated (seed ``seed``) and compared with the real jets decoded by the same
    tokenizer: the AUC of a DeepSets classifier trained to tell them apart (0.5: indistinguishable; its run in
    ``run_dir/classifier/<digest of the two samples>``), and the distances of :func:`sample_distances`
    (W1m, W1n, FPD).
    """
    tokenizer = generator.tokenizer
    sequences = generator.sequences(n_generated, batch_size=batch_size, seed=seed, progress=progress)
    distances = sample_distances(sequences, real_sequences, tokenizer, seed=seed)
    gen_features, gen_mask, _ = tokenizer.decode_sequences(sequences)
    real_features, real_mask, _ = tokenizer.decode_sequences(real_sequences)
    # the classifier's run is named by both samples: another real sample is another run, never a reused one
    digest = hashlib.sha256(
        np.ascontiguousarray(sequences).tobytes() + np.ascontiguousarray(real_sequences).tobytes()
    ).hexdigest()[:12]
    classifier = generated_vs_real_auc(
        (gen_features, gen_mask), (real_features, real_mask),
        training=TrainingConfig(epochs=classifier_epochs, batch_size=128, learning_rate=1e-3, seed=seed, device=device),
        run_dir=Path(run_dir) / "classifier" / digest, split_seed=seed, progress=progress,
    )  # fmt: skip
    return {"auc": float(classifier["auc"]), **distances}


def sample_distances(sequences: np.ndarray, real_sequences: np.ndarray, tokenizer, *, seed: int) -> dict[str, float]:
    """Distances of the jets of token ``sequences`` from those of ``real_sequences``, both decoded by ``tokenizer``.

    ``w1m`` and ``w1n``: the 1-D Wasserstein distance of the jet mass [GeV] and of the multiplicity;
    ``fpd``: the Frechet physics distance of mass, pT, multiplicity, tau21 and tau32 (no units), with
    ``fpd_error`` (NaN when a sample has too few jets for it); ``n_generated``: the jets of ``sequences``
    (a sequence that stopped at once makes none).
    Two samples of real jets give the floor each distance has at these sizes.
    """
    generated, _ = decode_generated_jets(sequences, tokenizer)
    real, _ = decode_generated_jets(real_sequences, tokenizer)
    distances = wasserstein_distances(jet_distributions(generated.constituents), jet_distributions(real.constituents))
    fpd, fpd_error = _fpd(real, generated, seed)
    return {
        "w1m": float(distances["jet_mass"]),
        "w1n": float(distances["multiplicity"]),
        "fpd": float(fpd),
        "fpd_error": float(fpd_error),
        "n_generated": len(generated),
    }


def _fpd(real: Jets, generated: Jets, seed: int) -> tuple[float, float]:
    """FPD and its error; NaN, with a warning saying why, when a sample has too few jets for one (tiny runs)."""
    # a sample of fewer jets than that is not even looked into (fpd_kpd_features would refuse it)
    rows = [fpd_kpd_features(jets.constituents) if len(jets) >= MIN_SAMPLES else jets for jets in (real, generated)]
    if min(len(r) for r in rows) < MIN_SAMPLES:
        warnings.warn(
            f"no FPD: it needs {MIN_SAMPLES} jets with defined tau21 and tau32 in each sample, here "
            f"{len(rows[0])} real and {len(rows[1])} generated; reported as NaN",
            stacklevel=3,
        )
        return float("nan"), float("nan")
    return frechet_physics_distance(*rows, seed=seed)
