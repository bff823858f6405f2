"""Training the GPT of :mod:`omnijet_lib.models.gpt`: its next-token loss, and :func:`fit_gpt` on the training loop.

:func:`fit_gpt` trains from random weights, or continues next-token training from a
pre-trained generative checkpoint (``init_from``, ``strategy``): cross-data
pre-training, a GPT trained on the jets of one domain and fine-tuned on another's.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from omnijet_lib.atomic import file_digest
from omnijet_lib.checkpoints import load_checkpoint
from omnijet_lib.models.gpt import (
    GPT,
    GPTConfig,
    PretrainedGPT,
    check_compatible,
    chunked_cross_entropy,
    load_gpt,
    load_pretrained_weights,
    read_pretrained_gpt,
    with_condition_tokens,
)
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

# Where a GPT's weights start, named as notebook 05's strategies for tagging (omnijet_lib.transfer.STRATEGIES):
# "scratch" random; "finetune" all from a generative checkpoint, all trained; "frozen" the checkpoint's
# backbone fixed under a new generative head, which alone trains.
STRATEGIES = ("scratch", "finetune", "frozen")
# The GPT's submodules each strategy takes from the checkpoint.
LOADED_PARTS = {"scratch": (), "finetune": ("backbone", "head"), "frozen": ("backbone",)}


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
    init_from: str | os.PathLike | None = None,
    strategy: str = "scratch",
    tokenizer_file: str | os.PathLike | None = None,
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

    Where the weights start (``strategy``, named as notebook 05's for tagging):

    - "scratch" (the default): random, from ``training.seed``; ``init_from`` must not be given.
    - "finetune": every weight -- embeddings, blocks and generative head -- from the
      generative checkpoint ``init_from`` (e.g. another run's ``best.pt``), and all train:
      next-token training continued on these sequences (cross-data pre-training: a GPT
      of domain A fine-tuned on domain B).
    - "frozen": the backbone (embeddings and blocks) from ``init_from``, fixed; a *new*
      generative head (random, from ``training.seed``) is the only thing trained.  The
      generative analogue of notebook 05's frozen strategy: there a new classification
      head learns the tag from the fixed hidden states of the pre-trained backbone; here
      a new generative head learns B's next-token distribution from them -- a linear
      probe of how much of B the representation learnt on A already holds, for the
      price of one Linear layer.  The head is new rather than A's for the same reason
      as there: it measures the representation, not A's output statistics.

    The checkpoint is checked before anything trains, each error naming it, the field
    and both values: it must be a GPT checkpoint, its config must be ``config`` in every
    field but ``max_length``, which may differ only without the multiplicity token
    (:func:`~omnijet_lib.models.gpt.check_compatible`), and, where both record one
    (``tokenizer_file``), it must have been trained on tokens of the same tokenizer.
    ``tokenizer_file``: the saved tokenizer these sequences were made with; its name and
    digest are recorded with the run, so that a run fine-tuned from it can be checked.

    The run records ``strategy``, ``init_from`` and the checkpoint's digest in its
    checkpoints' ``describe`` (:func:`~omnijet_lib.models.gpt.read_pretrained_gpt`).
    Interrupted, it resumes from its own ``last.pt`` like any run, not from ``init_from``
    (which must still exist and be unchanged: continuing a run from another checkpoint
    is refused, as any other change of the run is).
    """
    if strategy not in STRATEGIES:
        msg = f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}"
        raise ValueError(msg)
    if (strategy == "scratch") != (init_from is None):
        msg = (
            f"strategy {strategy!r} needs a generative checkpoint to start from (init_from)"
            if init_from is None
            else f"init_from={str(init_from)!r} given with strategy 'scratch', which starts from random weights: "
            f"choose 'finetune' or 'frozen', or leave init_from out"
        )
        raise ValueError(msg)
    tokenizer = tokenizer_record(tokenizer_file)
    # Checked before the data, which may be long to check: a wrong checkpoint fails at once.
    pretrained = _pretrained(init_from, config, tokenizer) if init_from is not None else None
    train_sequences, train_lengths = _sequences_and_lengths(train_sequences, config, "train", progress)
    val_sequences, val_lengths = _sequences_and_lengths(val_sequences, config, "validation", progress)
    train_data = (train_sequences, *_jet_pt_column(train_jet_pt, config, len(train_lengths), "train"))
    val_data = (val_sequences, *_jet_pt_column(val_jet_pt, config, len(val_lengths), "validation"))
    torch.manual_seed(training.seed)  # the initial weights
    model = GPT(config)
    optimizer = None  # train's AdamW over every weight
    if pretrained is not None:
        # A resumed run then loads its own last.pt over these weights (train).
        load_pretrained_weights(model, pretrained, config, parts=LOADED_PARTS[strategy], what="this run")
        if strategy == "frozen":
            model.backbone.requires_grad_(False)
            optimizer = torch.optim.AdamW(
                model.head.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay
            )
    # Options a GPT may be trained without are described only when used: a run written before they
    # existed described itself so, and resumes.
    gpt_config = {
        name: value
        for name, value in asdict(config).items()
        if name not in OPTIONAL_FIELDS or value != OPTIONAL_FIELDS[name]
    }
    describe = {"model": "GPT", "gpt_config": gpt_config}
    # What the run is, recorded with it: the tokenizer (unless the run in run_dir began before runs recorded
    # it, and continues so) and, for a pre-trained start, the strategy and the checkpoint.
    if tokenizer is not None and _records(run_dir, "tokenizer"):
        describe["tokenizer"] = tokenizer
    if pretrained is not None:
        describe |= {
            "strategy": strategy,
            "init_from": str(init_from),
            "init_digest": file_digest(init_from, length=16),
        }
    # Batches of similar lengths, which next_token_loss trims to their longest: far less padding computed;
    # validation in length order for the same reason (a row source is then read in that order).
    val_order = val_lengths.argsort(stable=True)
    val_data = tuple(rows_in_order(column, val_order) for column in val_data)
    result = train(
        model, train_data, val_data, next_token_loss, training, run_dir,
        describe=describe, evaluate=evaluate, progress=progress, on_step=on_step, lengths=train_lengths,
        optimizer=optimizer,
    )  # fmt: skip
    return load_gpt(result.best_checkpoint, device=training.device), result


def tokenizer_record(tokenizer_file: str | os.PathLike | None) -> dict | None:
    """What a run records of the tokenizer that made its sequences: the file's name and the digest of its bytes.

    The name alone, not the path: a run must resume whether its tokenizer was given
    relative to the project or absolute; the digest says which tokenizer it is.
    """
    if tokenizer_file is None or str(tokenizer_file) == "":
        return None
    path = Path(tokenizer_file)
    if not path.is_file():
        msg = (
            f"tokenizer file not found: {path} (tokenizer_file names the saved tokenizer the sequences were made with)"
        )
        raise FileNotFoundError(msg)
    return {"file": path.name, "digest": file_digest(path, length=16)}


def _pretrained(init_from: str | os.PathLike, config: GPTConfig, tokenizer: dict | None) -> PretrainedGPT:
    """The generative checkpoint ``init_from``, checked against this run: a GPT's, of a compatible config
    (:func:`~omnijet_lib.models.gpt.check_compatible`), trained on tokens of this run's tokenizer."""
    pretrained = read_pretrained_gpt(init_from)  # refuses a missing file, another checkpoint, another model's
    check_compatible(pretrained.config, config, init_from, what="this run")
    check_same_tokenizer(pretrained, init_from, tokenizer, what="this run")
    return pretrained


def check_same_tokenizer(
    pretrained: PretrainedGPT, path: str | os.PathLike, tokenizer: dict | None, *, what: str
) -> None:
    """Refuse a GPT checkpoint (read from ``path``) trained on tokens of another tokenizer than ``what``'s.

    ``tokenizer``: :func:`tokenizer_record` of the tokenizer ``what`` reads tokens of.
    Where only one side records its tokenizer (a checkpoint written before runs recorded
    it, or sequences given without theirs) only the codebook size can be checked: a warning
    says so.
    """
    stored = pretrained.describe.get("tokenizer")
    if stored is not None and tokenizer is not None and stored["digest"] != tokenizer["digest"]:
        msg = (
            f"{path} was trained on tokens of another tokenizer: {stored['file']} (digest {stored['digest']}) "
            f"in the checkpoint, {tokenizer['file']} (digest {tokenizer['digest']}) for {what}; code k of one is "
            f"not code k of the other, so its weights would read these tokens wrongly. Tokenize these jets "
            f"with the checkpoint's tokenizer, or pre-train on tokens of this one"
        )
        raise ValueError(msg)
    if (stored is None) != (tokenizer is None):
        has, lacks = (what, f"the checkpoint {path}") if stored is None else (f"{path}", what)
        warnings.warn(
            f"{has} records its tokenizer but {lacks} does not: only the vocabulary (codebook size) could be "
            f"checked, not that both were tokenized by the same tokenizer",
            stacklevel=3,
        )


def _records(run_dir: str | os.PathLike, key: str) -> bool:
    """Whether the run to be written in ``run_dir`` describes ``key``: yes, unless a run already there does not.

    A run begun before runs recorded ``key`` continues (and returns) as it was described.
    """
    last = Path(run_dir) / "last.pt"
    if not last.is_file():
        return True
    try:
        return key in (load_checkpoint(last).get("describe") or {})
    except ValueError:  # not a checkpoint: train says so
        return True


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
