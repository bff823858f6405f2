"""Fitting tokenizers: a binned grid spans its data; a VQ-VAE trains on the training loop (:func:`fit_vqvae`)."""

from __future__ import annotations

import os
from functools import partial

import numpy as np
import torch

from omnijet_lib.checkpoints import load_checkpoint
from omnijet_lib.data.preprocessing import PreprocessedJets, PreprocessingConfig
from omnijet_lib.tokenizers.base import Tokenizer, check_features
from omnijet_lib.tokenizers.binned import BinnedTokenizer
from omnijet_lib.tokenizers.vqvae import VQVAE, VQVAETokenizer, jet_reconstruction_loss, trim_to_longest
from omnijet_lib.training.config import StepOutput, TrainingConfig, TrainingResult
from omnijet_lib.training.loop import train as train_loop


def fit_tokenizer(
    tokenizer: Tokenizer,
    train: PreprocessedJets | tuple,
    val: PreprocessedJets | tuple,
    *,
    training: TrainingConfig,
    run_dir: str | os.PathLike,
    length_buckets: bool = False,
    progress: bool = True,
) -> Tokenizer:
    """Fit any tokenizer: a binned grid spans the training data, a VQ-VAE is trained (resumably).

    ``train`` and ``val`` are pre-processed jets, anything else with ``features`` and
    ``mask``, or ``(features, mask)`` pairs (pre-processed showers);
    ``length_buckets`` see :func:`fit_vqvae`.
    """
    train, val = (_features_and_mask(data) for data in (train, val))
    if isinstance(tokenizer, BinnedTokenizer):
        return tokenizer.fit(*train)
    fit_vqvae(tokenizer, train, val, training, run_dir, length_buckets=length_buckets, progress=progress)
    return tokenizer


def _features_and_mask(data) -> tuple:
    if hasattr(data, "features") and hasattr(data, "mask"):
        return data.features, data.mask
    features, mask = data
    return features, mask


def fit_vqvae(
    tokenizer: VQVAETokenizer,
    train,
    val,
    training: TrainingConfig,
    run_dir: str | os.PathLike,
    *,
    length_buckets: bool = False,
    progress: bool = True,
) -> TrainingResult:
    """Train a VQ-VAE tokenizer on pre-processed jets or showers ``train`` / ``val`` = (features, mask).

    Uses the project's training loop (best checkpoint by validation loss,
    resumable); the tokenizer keeps the best weights.  Returns the loop's result.
    ``length_buckets`` batches samples of similar length together, which
    :func:`vqvae_loss` then trims: far less padding computed where lengths
    vary a lot (showers of 100 to 1700 hits).
    """
    train, val = (
        tuple(torch.as_tensor(np.asarray(a)) for a in check_features(*pair, n_features=tokenizer.config.n_features))
        for pair in (train, val)
    )
    val_features, val_mask = val

    def utilisation(model: VQVAE) -> dict[str, float]:
        codes = tokenizer.batched(lambda x, m: model.encode(x, m), val_features, val_mask, dtype=torch.long)
        return {"codebook_utilisation": model.quantizer.utilisation(codes)}

    if tokenizer.config.jet_weight > 0 and not isinstance(tokenizer.preprocessing, PreprocessingConfig):
        msg = f"jet_weight needs jets; this tokenizer's pre-processing is {type(tokenizer.preprocessing).__name__}"
        raise ValueError(msg)
    result = train_loop(
        tokenizer.model, train, val, partial(vqvae_loss, preprocessing=tokenizer.preprocessing), training, run_dir,
        evaluate=utilisation, describe=tokenizer.describe(), progress=progress,
        lengths=train[1].sum(dim=1) if length_buckets else None,
    )  # fmt: skip
    tokenizer.model.load_state_dict(load_checkpoint(result.best_checkpoint, map_location=tokenizer.device)["model"])
    tokenizer.model.to(tokenizer.device)
    tokenizer.history = result.history
    return result


def vqvae_loss(model: VQVAE, batch: tuple[torch.Tensor, ...], *, preprocessing: PreprocessingConfig | None = None):
    """The training loop's loss function: (features, mask) batch -> loss and logged parts.

    A model with ``jet_weight`` needs the jets' ``preprocessing`` for its jet-level term.
    """
    features, mask = trim_to_longest(*batch)
    out = model(features, mask)
    metrics = {"mse": out.reconstruction_loss.item(), "commit": out.commit_loss.item()}
    loss = out.loss
    if model.config.jet_weight > 0:
        if not isinstance(preprocessing, PreprocessingConfig):
            msg = f"jet_weight needs the jets' PreprocessingConfig for its jet-level term, got {preprocessing!r}"
            raise ValueError(msg)
        jet = jet_reconstruction_loss(features, out.reconstruction, mask, preprocessing)
        loss, metrics["jet"] = loss + model.config.jet_weight * jet, jet.item()
    return StepOutput(loss, metrics)
