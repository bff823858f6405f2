"""Classifier tests: how much information survives tokenization (or generation).

:func:`train_classifier` trains a jet classifier (DeepSets or transformer,
:mod:`omnijet_lib.models.classifiers`) with cross-entropy on a fixed
train/val/test split and scores the test split with the best-validation
weights.  Two uses (paper appendices A.2 and A.5):

- :func:`lost_information`: train once on original and once on reconstructed
  constituents, same split and seed; the accuracy gap is the information the
  tokens lost (paper Fig. 5).
- generated vs real: label generated jets 1 and reconstructed real jets 0; an
  AUC near 0.5 means the classifier cannot tell them apart.

Inputs are padded constituents ``x (N, L, F)`` — the scaled features of
:class:`omnijet_lib.data.preprocessing.PreprocessedJets` or a tokenizer's
``reconstruct`` — with ``mask (N, L)`` and integer labels ``(N,)``.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

from omnijet_lib.checkpoints import load_checkpoint
from omnijet_lib.data.splits import split_indices
from omnijet_lib.devices import pick_device
from omnijet_lib.errors import BadDataError
from omnijet_lib.models.classifiers import (
    DeepSets,
    DeepSetsConfig,
    TransformerClassifier,
    TransformerClassifierConfig,
)
from omnijet_lib.training import StepOutput, TrainingConfig, train

MODELS = ("deepsets", "transformer")  # the names train_classifier accepts for ``model``


class ClassifierResult(NamedTuple):
    accuracy: float  # on the test split
    auc: float | None  # ROC AUC of class 1 on the test split; None unless there are exactly two classes
    test_scores: np.ndarray  # (n_test, n_classes) softmax probabilities
    test_labels: np.ndarray  # (n_test,) true labels
    best_epoch: int  # the epoch whose weights were scored (lowest validation loss)


def _as_tensors(x, mask, labels) -> tuple[Tensor, Tensor, Tensor]:
    """numpy or torch -> (float32 x, bool mask, int64 labels) on the CPU, checked."""
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x, dtype=torch.float32).cpu()
    mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask).cpu().bool()
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels).cpu()
    if x.ndim != 3 or mask.shape != x.shape[:2] or labels.shape != x.shape[:1]:
        msg = (
            f"expected x (N, L, F), mask (N, L) and labels (N,); "
            f"got {tuple(x.shape)}, {tuple(mask.shape)} and {tuple(labels.shape)}"
        )
        raise ValueError(msg)
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        msg = "labels must be integers 0 .. n_classes - 1"
        raise ValueError(msg)
    labels = labels.long()
    if labels.numel() and labels.min() < 0:
        msg = f"labels must be integers 0 .. n_classes - 1; got a minimum of {labels.min().item()}"
        raise ValueError(msg)
    if not torch.isfinite(x[mask]).all():
        msg = "x has NaN or infinite values at real (unmasked) constituents"
        raise BadDataError(msg)
    return x, mask, labels


def build_classifier(model: str | nn.Module, *, n_features: int, n_classes: int) -> nn.Module:
    """The default-config classifier named ``model``, or ``model`` itself if it is already a module."""
    if isinstance(model, nn.Module):
        return model
    if model == "deepsets":
        return DeepSets(DeepSetsConfig(n_features=n_features, n_classes=n_classes))
    if model == "transformer":
        return TransformerClassifier(TransformerClassifierConfig(n_features=n_features, n_classes=n_classes))
    msg = f"unknown classifier {model!r}; choose from {', '.join(repr(m) for m in MODELS)} or pass an nn.Module"
    raise ValueError(msg)


def cross_entropy_step(model: nn.Module, batch: tuple[Tensor, ...]) -> StepOutput:
    """Loss of one (x, mask, labels) batch, with its accuracy as a metric."""
    x, mask, labels = batch
    logits = model(x, mask)  # (B, n_classes)
    accuracy = (logits.argmax(dim=-1) == labels).float().mean().item()
    return StepOutput(F.cross_entropy(logits, labels), {"accuracy": accuracy})


@torch.no_grad()
def predict_proba(model: nn.Module, x: Tensor, mask: Tensor, *, batch_size: int = 1024) -> np.ndarray:
    """Softmax probabilities ``(N, n_classes)``, in batches, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    scores = [
        F.softmax(model(x[i : i + batch_size].to(device), mask[i : i + batch_size].to(device)), dim=-1).cpu()
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(scores).numpy()


def train_classifier(
    x,
    mask,
    labels,
    *,
    model: str | nn.Module = "deepsets",
    training: TrainingConfig,
    run_dir: str | os.PathLike,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    split_seed: int = 0,
    progress: bool = True,
) -> ClassifierResult:
    """Train a classifier on the train split, pick the best validation epoch, score the test split.

    ``labels`` are 0 .. n_classes - 1, each present.  ``model`` is
    ``"deepsets"`` or ``"transformer"`` (default configs, sized to the features
    and the classes) or a ready module such as
    ``DeepSets(DeepSetsConfig(particle_layers=(10, 10, 10)))``; a module is
    trained in place and left with the best-validation weights.  Inputs may be
    numpy arrays or tensors.  The checkpoints record the classifier, its config
    and the split.  Training uses
    :func:`omnijet_lib.training.train` and so resumes from ``run_dir/last.pt``
    if present: give every distinct training its own ``run_dir``.
    """
    x, mask, labels = _as_tensors(x, mask, labels)
    present = torch.unique(labels).tolist()
    n_classes = len(present)
    if n_classes < 2:
        msg = f"need at least two classes to train a classifier; labels hold {present}"
        raise ValueError(msg)
    # JetClass indices (QCD = 0, Tbqq = 8) would otherwise make a 9-class problem with 7 empty classes.
    if present != list(range(n_classes)):
        msg = (
            f"labels must be 0 .. n_classes - 1 with every class present; got {present}\n"
            "    renumber them, e.g. labels = np.unique(labels, return_inverse=True)[1]"
        )
        raise ValueError(msg)
    splits = split_indices(len(x), fractions=fractions, seed=split_seed)
    train_idx, val_idx, test_idx = (torch.as_tensor(i) for i in splits)
    # The same seed gives the same initial weights, so two trainings differ only by their data.
    torch.manual_seed(training.seed)
    net = build_classifier(model, n_features=x.shape[-1], n_classes=n_classes)

    def part(idx):
        return x[idx], mask[idx], labels[idx]

    describe = {"classifier": type(net).__name__, "split_seed": split_seed, "fractions": tuple(fractions)}
    if is_dataclass(getattr(net, "config", None)):
        describe["config"] = asdict(net.config)
    result = train(
        net, part(train_idx), part(val_idx), cross_entropy_step, training, run_dir, describe=describe, progress=progress
    )
    net.load_state_dict(load_checkpoint(result.best_checkpoint)["model"])
    net.to(pick_device(training.device))
    scores = predict_proba(net, x[test_idx], mask[test_idx], batch_size=max(training.batch_size, 1024))
    test_labels = labels[test_idx].numpy()
    accuracy = float(np.mean(scores.argmax(axis=1) == test_labels))
    # AUC needs both classes among the test jets.
    auc = float(roc_auc_score(test_labels, scores[:, 1])) if n_classes == 2 and len(set(test_labels)) == 2 else None
    return ClassifierResult(accuracy, auc, scores, test_labels, int(result.best_epoch))


def lost_information(
    original,
    reconstructed,
    mask_original,
    mask_reconstructed,
    labels,
    *,
    model: str | nn.Module = "deepsets",
    training: TrainingConfig,
    run_dir: str | os.PathLike,
    split_seed: int = 0,
    progress: bool = True,
) -> dict:
    """Accuracy (and, for two classes, AUC) on original vs on reconstructed constituents.

    Two classifiers with the same split, seed and initial weights (a module
    ``model`` is copied for each), trained under ``run_dir/original`` and
    ``run_dir/reconstructed``.  Returns plain floats: ``accuracy_original``,
    ``accuracy_reconstructed``, ``accuracy_gap`` = original - reconstructed
    (> 0: the reconstruction lost information), plus ``auc_original``,
    ``auc_reconstructed``, ``auc_gap`` when the labels have two classes.
    """
    run_dir = Path(run_dir)
    results = {}
    for name, x, mask in (("original", original, mask_original), ("reconstructed", reconstructed, mask_reconstructed)):
        results[name] = train_classifier(
            x,
            mask,
            labels,
            model=copy.deepcopy(model),
            training=training,
            run_dir=run_dir / name,
            split_seed=split_seed,
            progress=progress,
        )
    original_result, reconstructed_result = results["original"], results["reconstructed"]
    summary = {
        "accuracy_original": original_result.accuracy,
        "accuracy_reconstructed": reconstructed_result.accuracy,
        "accuracy_gap": original_result.accuracy - reconstructed_result.accuracy,
    }
    if original_result.auc is not None and reconstructed_result.auc is not None:
        summary |= {
            "auc_original": original_result.auc,
            "auc_reconstructed": reconstructed_result.auc,
            "auc_gap": original_result.auc - reconstructed_result.auc,
        }
    return summary
