"""Tagging performance: accuracy, ROC AUC and background rejection at fixed signal efficiency."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def background_rejection(labels: np.ndarray, scores: np.ndarray, signal_efficiency: float) -> float:
    """1 / (background efficiency) where the signal efficiency is ``signal_efficiency``.

    Signal is label 1; ``scores`` grow with signal likeness.  The ROC curve is
    interpolated linearly; a background efficiency of 0 gives infinity.
    """
    if not 0 < signal_efficiency <= 1:
        msg = f"signal_efficiency must be in (0, 1], got {signal_efficiency}"
        raise ValueError(msg)
    background_eff, signal_eff, _ = roc_curve(labels, scores)
    mistag = float(np.interp(signal_efficiency, signal_eff, background_eff))
    return 1.0 / mistag if mistag > 0 else float("inf")


def tagging_metrics(labels, scores) -> dict[str, float]:
    """``accuracy`` (score > 0.5), ``auc``, ``rejection_30`` and ``rejection_50`` of a binary tagger."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        msg = f"labels {labels.shape} and scores {scores.shape} must be two equally long 1-D arrays"
        raise ValueError(msg)
    if set(np.unique(labels).tolist()) != {0, 1}:
        msg = f"labels must hold both classes 0 (background) and 1 (signal); got {np.unique(labels).tolist()}"
        raise ValueError(msg)
    return {
        "accuracy": float(np.mean((scores > 0.5) == (labels == 1))),
        "auc": float(roc_auc_score(labels, scores)),
        "rejection_30": background_rejection(labels, scores, 0.3),
        "rejection_50": background_rejection(labels, scores, 0.5),
    }
