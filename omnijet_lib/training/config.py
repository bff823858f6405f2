"""What a training run is asked to do (:class:`TrainingConfig`), what a loss function returns, and what a run returns."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from omnijet_lib.devices import PRECISIONS
from omnijet_lib.errors import is_int

LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 10  # passes over the training data; may be raised when resuming
    batch_size: int = 256  # samples per optimizer step (the last batch of an epoch may be smaller)
    learning_rate: float = 1e-3  # of the default AdamW
    weight_decay: float = 0.0  # of the default AdamW (decoupled, so it does not scale with the gradients)
    seed: int = 0  # seeds torch's RNG at the start and the batch order of every epoch
    device: str = "auto"  # "auto" (cuda > mps > cpu), "cpu", "cuda", "cuda:1", "mps"; may change when resuming
    checkpoint_every: int = 200  # optimizer steps between mid-epoch checkpoints; may change when resuming
    patience: int | None = None  # early stopping: epochs without a better validation best_by; None trains all epochs
    max_grad_norm: float | None = None  # clip the global gradient norm to this; None does not clip
    # The validation number that picks best.pt and drives early stopping, smaller is better: "loss", a metric
    # of the loss function (e.g. a VQ-VAE's "mse", when a growing commitment term hides the reconstruction),
    # or a number train's evaluate returns.
    best_by: str = "loss"
    # "constant", or "cosine": the learning rate falls from learning_rate to 0 over the run (half a cosine),
    # set from the run's progress alone, so a resumed run follows it exactly. Raising epochs stretches the rest.
    lr_schedule: str = "constant"
    # Fraction of the run over which the learning rate first rises linearly from 0 (either schedule): large
    # early steps of a freshly initialised transformer are what warm-up avoids. 0: no warm-up.
    warmup: float = 0.0
    # Switches for GPUs, off by default (a CPU gains little from them, and fp32 is the reference):
    # "bf16" or "fp16" runs the forward passes under autocast (fp16 with a gradient scaler, saved with
    # the run); "fp32" does not.
    precision: str = "fp32"
    # torch.compile the loss (model and loss function together): minutes of compiling, then faster steps.
    compile: bool = False
    # float32 matrix products in TF32 on CUDA GPUs that have it (~1e-3 relative precision); nothing elsewhere.
    tf32: bool = False

    def __post_init__(self):
        rules = [
            ("epochs", is_int(self.epochs) and self.epochs >= 1, "an integer >= 1"),
            ("batch_size", is_int(self.batch_size) and self.batch_size >= 1, "an integer >= 1"),
            ("learning_rate", self.learning_rate >= 0, ">= 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("seed", is_int(self.seed) and self.seed >= 0, "an integer >= 0"),
            ("checkpoint_every", is_int(self.checkpoint_every) and self.checkpoint_every >= 1, "an integer >= 1"),
            ("patience", self.patience is None or (is_int(self.patience) and self.patience >= 1), "None or >= 1"),
            ("max_grad_norm", self.max_grad_norm is None or self.max_grad_norm > 0, "None or > 0"),
            ("best_by", isinstance(self.best_by, str) and bool(self.best_by), "a validation metric's name"),
            ("lr_schedule", self.lr_schedule in LR_SCHEDULES, f"one of {LR_SCHEDULES}"),
            ("warmup", 0 <= self.warmup < 1, "a fraction of the run, 0 <= warmup < 1"),
            ("precision", self.precision in PRECISIONS, f"one of {tuple(PRECISIONS)}"),
            ("compile", isinstance(self.compile, bool), "True or False"),
            ("tf32", isinstance(self.tf32, bool), "True or False"),
        ]
        bad = [f"{name}={getattr(self, name)!r} (must be {rule})" for name, ok, rule in rules if not ok]
        if bad:
            msg = "invalid TrainingConfig: " + ", ".join(bad)
            raise ValueError(msg)


# Fields a resumed run may change: they alter what is computed at most by rounding (epochs only extends it).
RESUMABLE_CHANGES = ("epochs", "device", "checkpoint_every", "compile", "tf32")


class StepOutput(NamedTuple):
    loss: torch.Tensor  # scalar to minimise
    metrics: dict[str, float]  # extra numbers to log (averaged over batches, weighted like the loss)
    # How many units the loss and metrics are means over (e.g. a GPT's real target tokens): the epoch's
    # numbers are then means over those units -- a validation loss that is the per-token cross-entropy,
    # whatever the batches' lengths. None: the batch's samples.
    weight: float | None = None


LossFn = Callable[[nn.Module, tuple[torch.Tensor, ...]], StepOutput]


@dataclass
class TrainingResult:
    history: list[dict]  # one dict per finished epoch: epoch, train_loss, val_loss, <metrics>, seconds, ...
    best_epoch: int  # index into history
    best_val_loss: float  # the best epoch's validation value of TrainingConfig.best_by ("loss" by default)
    best_checkpoint: Path  # run_dir / "best.pt"
    last_checkpoint: Path  # run_dir / "last.pt"


def learning_rate_factor(config: TrainingConfig, progress: float) -> float:
    """The learning rate at ``progress`` (0..1) of the run, relative to ``config.learning_rate``.

    A linear rise over the first ``config.warmup`` of the run, then constant, or half a
    cosine down to 0 over the rest (``lr_schedule="cosine"``).  A function of the run's
    progress alone, so a resumed run follows it exactly.
    """
    progress = min(progress, 1.0)
    if progress < config.warmup:
        return progress / config.warmup
    if config.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (progress - config.warmup) / (1.0 - config.warmup)))
    return 1.0
