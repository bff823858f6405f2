"""The notebooks' chains as library functions, so that a notebook narrates instead of gluing.

:func:`fit_jet_generator` carries tokenized jets to a trained generator: it
chooses the GPT's conditions from the data (the vocabulary, the longest
sequence, the jet pT bins), trains it on the training split read from disk,
follows a small generated sample every epoch if asked, and returns a
:class:`JetGenerator` whose :meth:`~JetGenerator.generate` gives new jets,
decoded to constituents -- tokenize (``tokenized``) -> train -> generate -> decode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np

from omnijet_lib.data.jets import Jets
from omnijet_lib.generation import decode_generated_jets, generate_sequences
from omnijet_lib.metrics.generation_quality import generation_monitor
from omnijet_lib.models.gpt import GPT, GPTConfig
from omnijet_lib.tokenizers.base import Tokenizer
from omnijet_lib.tokenizers.token_dataset import TokenDataset
from omnijet_lib.training import TrainingConfig, TrainingResult
from omnijet_lib.training.gpt import fit_gpt

CONDITIONS_FROM = ("training", "model")


@dataclass
class JetGenerator:
    """A trained GPT with the tokenizer that decodes it and the pools its jets' conditions are drawn from.

    ``multiplicities`` and ``jet_pt`` (one entry per training jet, drawn together)
    are None where the GPT draws the condition itself, or has none.
    """

    model: GPT
    tokenizer: Tokenizer
    multiplicities: np.ndarray | None = None
    jet_pt: np.ndarray | None = None

    def sequences(
        self, n: int, *, batch_size: int = 256, temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
        progress: bool = True,
    ) -> np.ndarray:  # fmt: skip
        """``n`` generated token sequences (a token file's layout: START .. STOP, PAD)."""
        return generate_sequences(
            self.model, n, batch_size=batch_size, temperature=temperature, top_k=top_k, seed=seed, progress=progress,
            multiplicities=self.multiplicities, jet_pt=self.jet_pt,
        )  # fmt: skip

    def generate(self, n: int, **options) -> tuple[Jets, np.ndarray]:
        """``n`` new jets decoded to constituents (axis at eta = phi = 0), and their sequences.

        A sequence that stopped at once makes no jet and is left out, so fewer than
        ``n`` jets may come back; ``options`` are :meth:`sequences`'.
        """
        sequences = self.sequences(n, **options)
        jets, kept = decode_generated_jets(sequences, self.tokenizer)
        return jets, sequences[kept]


def fit_jet_generator(
    dataset: TokenDataset,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    tokenizer: Tokenizer,
    gpt: GPTConfig,
    training: TrainingConfig,
    run_dir: str | os.PathLike,
    *,
    jet_pt_bins: int = 0,
    conditions_from: str = "training",
    monitor_jets: int = 0,
    progress: bool = True,
) -> tuple[JetGenerator, TrainingResult]:
    """Train a GPT on the jets ``train_idx`` of ``dataset`` (validated on ``val_idx``); return it as a generator.

    ``gpt`` gives the architecture and whether the multiplicity comes first; the
    data set the rest: the codebook size (``tokenizer``'s), the longest sequence
    (``dataset.width``) and, with ``jet_pt_bins`` >= 2, the edges of that many
    equally filled bins of the training jets' pT -- finest where the jets are many,
    at the selection's edge.  ``conditions_from`` says where generation takes a
    jet's multiplicity and pT bin: from the training jets, drawn together
    ("training"), or from the GPT's own learned distributions ("model").  With
    ``monitor_jets``, that many jets are generated after every epoch and compared
    with the decoded validation jets (``sample_w1m``, ``sample_w1n``).  The run
    lives in ``run_dir`` and resumes from there.
    """
    if conditions_from not in CONDITIONS_FROM:
        msg = f"conditions_from must be one of {CONDITIONS_FROM}, got {conditions_from!r}"
        raise ValueError(msg)
    if jet_pt_bins == 1 or jet_pt_bins < 0:
        msg = f"jet_pt_bins must be 0 (no jet pT token) or at least 2, got {jet_pt_bins}"
        raise ValueError(msg)
    train_jet_pt = dataset.column("jet_pt", train_idx)
    edges = tuple(np.quantile(train_jet_pt, np.arange(1, jet_pt_bins) / jet_pt_bins)) if jet_pt_bins else ()
    config = replace(gpt, codebook_size=tokenizer.codebook_size, max_length=dataset.width, jet_pt_edges=edges)
    from_training = conditions_from == "training"
    multiplicities = dataset.lengths[train_idx] - 2 if config.multiplicity_token and from_training else None
    jet_pt = train_jet_pt if jet_pt_bins and from_training else None
    monitor = None
    if monitor_jets:
        reference, _ = decode_generated_jets(dataset.sequences(val_idx), tokenizer)
        monitor = generation_monitor(
            tokenizer, reference, n_jets=monitor_jets, seed=training.seed, multiplicities=multiplicities, jet_pt=jet_pt
        )
    conditioned = {"train_jet_pt": train_jet_pt, "val_jet_pt": dataset.column("jet_pt", val_idx)} if edges else {}
    model, result = fit_gpt(
        config, dataset.rows(train_idx), dataset.rows(val_idx), training, run_dir, evaluate=monitor,
        progress=progress, **conditioned,
    )  # fmt: skip
    return JetGenerator(model, tokenizer, multiplicities, jet_pt), result
