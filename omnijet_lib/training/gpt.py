"""Training the GPT of :mod:`omnijet_lib.models.gpt`: its next-token loss, and :func:`fit_gpt` on the training loop."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from omnijet_lib.models.gpt import GPT, GPTConfig, chunked_cross_entropy, load_gpt, with_condition_tokens
from omnijet_lib.tokenizers.tokens import PAD, START
from omnijet_lib.training.config import StepOutput, TrainingConfig, TrainingResult
from omnijet_lib.training.loop import train
from omnijet_lib.training.samples import is_row_source, rows_in_order


def next_token_loss(model: GPT, batch: tuple[Tensor, ...]) -> StepOutput:
    """Cross-entropy of predicting token t+1 from tokens 0..t, over real targets only.

    ``batch`` is ``(sequences,)`` with sequences ``(B, T)`` right-padded with PAD, or
    ``(sequences, jet_pt)`` for a GPT conditioned on the jet pT.
    The batch is cut to its longest sequence first: the padding columns after it
    would cost compute and change nothing.  Only real positions reach the output
    layer, in chunks (:func:`chunked_cross_entropy`), so the full
    batch x length x vocabulary logits never exist at once.  With
    ``config.multiplicity_token`` (``jet_pt_edges``) the sequences get M(n) (P(b))
    inserted first, and predicting it (the multiplicity's, the pT bin's
    log-likelihood) is one of the targets.
    """
    sequences, *jet_pt = batch
    sequences = with_condition_tokens(sequences, model.config, *jet_pt)
    longest = int((sequences != PAD).sum(dim=1).max())
    sequences = sequences[:, :longest]
    inputs, targets = sequences[:, :-1], sequences[:, 1:]
    real = targets != PAD
    hidden = model.backbone(inputs)[real]  # (n_real, embed_dim)
    loss_sum, n_correct = chunked_cross_entropy(model.head, hidden, targets[real])
    n_real = int(real.sum())
    # weight n_real: an epoch's loss is the per-token cross-entropy, not a mean of batch means
    return StepOutput(loss_sum / n_real, {"token_accuracy": n_correct / n_real}, weight=n_real)


# GPTConfig options added after runs were written, at their "off" value (multiplicity_token, older, stays described)
OPTIONAL_FIELDS = {"jet_pt_edges": (), "count_down": False}


def fit_gpt(
    config: GPTConfig,
    train_sequences,
    val_sequences,
    training: TrainingConfig,
    run_dir: str | os.PathLike,
    *,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    train_jet_pt=None,
    val_jet_pt=None,
) -> tuple[GPT, TrainingResult]:
    """Train a GPT on next-token prediction; returns the best-validation model and the run's result.

    ``evaluate(model)`` runs after each epoch's validation and its numbers join the
    history; ``training.best_by`` may name one of them (see :func:`~omnijet_lib.training.train`).
    ``on_step(global_step)`` is called after each optimizer step.

    Sequences are ``(N, T)`` integer arrays as stored in a token file (START ..
    STOP, PAD after), or row sources that read them from disk as needed
    (``TokenDataset.rows(indices)``, for data larger than memory): those are checked
    chunk by chunk, their lengths come from the source, and nothing is held whole.
    A GPT conditioned on the jet pT (``config.jet_pt_edges``) needs each sequence's
    jet pT [GeV]: ``train_jet_pt`` and ``val_jet_pt`` (e.g. ``TokenDataset.column("jet_pt", indices)``).
    The run lives in ``run_dir`` and resumes from there; its checkpoints carry the
    GPTConfig, so :func:`load_gpt` needs nothing else.
    """
    train_sequences, train_lengths = _sequences_and_lengths(train_sequences, config, "train", progress)
    val_sequences, val_lengths = _sequences_and_lengths(val_sequences, config, "validation", progress)
    train_data = (train_sequences, *_jet_pt_column(train_jet_pt, config, len(train_lengths), "train"))
    val_data = (val_sequences, *_jet_pt_column(val_jet_pt, config, len(val_lengths), "validation"))
    torch.manual_seed(training.seed)  # the initial weights
    model = GPT(config)
    # Options a GPT may be trained without are described only when used: a run written before they
    # existed described itself so, and resumes.
    gpt_config = {
        name: value
        for name, value in asdict(config).items()
        if name not in OPTIONAL_FIELDS or value != OPTIONAL_FIELDS[name]
    }
    describe = {"model": "GPT", "gpt_config": gpt_config}
    # Batches of similar lengths, which next_token_loss trims to their longest: far less padding computed;
    # validation in length order for the same reason (a row source is then read in that order).
    val_order = val_lengths.argsort(stable=True)
    val_data = tuple(rows_in_order(column, val_order) for column in val_data)
    result = train(
        model, train_data, val_data, next_token_loss, training, run_dir,
        describe=describe, evaluate=evaluate, progress=progress, on_step=on_step, lengths=train_lengths,
    )  # fmt: skip
    return load_gpt(result.best_checkpoint, device=training.device), result


def _jet_pt_column(jet_pt, config: GPTConfig, n: int, name: str) -> tuple[Tensor, ...]:
    """``(jet_pt,)`` as a float tensor for a pT-conditioned GPT, ``()`` for any other; checked."""
    if not config.jet_pt_edges:
        if jet_pt is not None:
            msg = (
                f"{name}_jet_pt given, but this GPT is not conditioned on the jet pT (GPTConfig.jet_pt_edges is empty)"
            )
            raise ValueError(msg)
        return ()
    if jet_pt is None:
        msg = f"this GPT is conditioned on the jet pT (GPTConfig.jet_pt_edges): give {name}_jet_pt"
        raise ValueError(msg)
    jet_pt = np.asarray(jet_pt, dtype=np.float32)
    if jet_pt.shape != (n,):
        msg = f"{name}_jet_pt has shape {jet_pt.shape}, expected one value per sequence: ({n},)"
        raise ValueError(msg)
    if not np.isfinite(jet_pt).all():
        msg = f"{name}_jet_pt holds NaN or infinite values"
        raise ValueError(msg)
    return (torch.from_numpy(jet_pt),)


def _sequences_and_lengths(sequences, config: GPTConfig, name: str, progress: bool) -> tuple:
    """Checked sequences (a tensor, or the row source as given) and their lengths, tokens per sequence."""
    if is_row_source(sequences):
        return sequences, _check_rows(sequences, config, name, progress)
    sequences = _check_sequences(sequences, config, name)
    return sequences, (sequences != PAD).sum(dim=1)


def _check_sequences(sequences, config: GPTConfig, name: str) -> Tensor:
    sequences = torch.as_tensor(np.asarray(sequences), dtype=torch.long)
    if sequences.ndim != 2 or len(sequences) == 0:
        msg = f"{name} sequences must be a non-empty (N, T) array, got shape {tuple(sequences.shape)}"
        raise ValueError(msg)
    _check_tokens(sequences, config, f"{name} sequences")
    return sequences


# Rows a row source is checked in at a time: 16 384 sequences of 130 int64 tokens are 17 MB.
CHECK_ROWS = 1 << 14


def _check_rows(source, config: GPTConfig, name: str, progress: bool) -> Tensor:
    """Check a row source's sequences chunk by chunk; their lengths (the source's ``lengths`` if it has them)."""
    if len(source) == 0:
        msg = f"{name} sequences must not be empty, got {source!r}"
        raise ValueError(msg)
    lengths = getattr(source, "lengths", None)
    counted = []
    with tqdm(total=len(source), desc=f"check {name} sequences", unit="seq", disable=not progress) as bar:
        for start in range(0, len(source), CHECK_ROWS):
            block = source[start : start + CHECK_ROWS]
            _check_tokens(block, config, f"{name} sequences {start}..{start + len(block) - 1}")
            if lengths is None:
                counted.append((block != PAD).sum(dim=1))
            bar.update(len(block))
    return torch.cat(counted) if lengths is None else torch.as_tensor(np.asarray(lengths))


def _check_tokens(sequences: Tensor, config: GPTConfig, what: str) -> None:
    """Refuse sequences the GPT cannot read: too long, tokens outside its vocabulary, no START."""
    if sequences.ndim != 2:
        msg = f"{what} must be (N, T), got shape {tuple(sequences.shape)}"
        raise ValueError(msg)
    if sequences.shape[1] > config.max_length:
        msg = f"{what} are {sequences.shape[1]} long, more than GPTConfig.max_length={config.max_length}"
        raise ValueError(msg)
    real = sequences[sequences != PAD]
    if real.min() < 0 or real.max() >= config.vocab_size:
        msg = (
            f"{what} hold tokens {int(real.min())}..{int(real.max())}, outside the vocabulary "
            f"0..{config.vocab_size - 1} of codebook_size={config.codebook_size}: a token file of another tokenizer?"
        )
        raise ValueError(msg)
    if (sequences[:, 0] != START).any():
        msg = f"{what} must begin with START (0)"
        raise ValueError(msg)
