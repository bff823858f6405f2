"""The checkpoint format of the training loop: what a ``last.pt`` / ``best.pt`` holds, and reading one.

:func:`omnijet_lib.training.train` writes them; models and tokenizers load their
weights with :func:`load_checkpoint`, which needs nothing of the loop.
"""

from __future__ import annotations

from pathlib import Path

import torch

CHECKPOINT_KEYS = (
    "model",  # model.state_dict()
    "optimizer",  # optimizer.state_dict()
    "epoch",  # the epoch in progress, from 0 (== finished epochs when step_in_epoch is 0)
    "step_in_epoch",  # batches of that epoch already trained on
    "global_step",  # optimizer steps since the start of the run
    "best_val_loss",  # of TrainingConfig.best_by
    "best_epoch",  # -1 before the first epoch has finished
    "stopped_early",  # early stopping triggered: the run is over whatever `epochs` says
    "history",  # one dict per finished epoch
    "rng",  # torch RNG states: "cpu", and "cuda" / "mps" when training there
    "train_sums",  # batch-size weighted sums of the current epoch's train loss and metrics
    "train_weights",  # the samples behind each of those sums
    "epoch_seconds",  # wall-clock seconds spent in the current epoch so far
    "training_config",  # asdict(TrainingConfig)
    "describe",  # the caller's description: model kind, model config, preprocessing constants
)
# Newer checkpoints also hold "process_rngs" (the RNG states of all torchrun processes, in rank order) and,
# for precision="fp16", "grad_scaler"; a checkpoint without them is read as one process's, in fp32.


def load_checkpoint(path, *, map_location="cpu") -> dict:
    """A checkpoint written by :func:`omnijet_lib.training.train` (keys: ``CHECKPOINT_KEYS``), loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        hint = f" (a directory: its checkpoints are {path / 'best.pt'} and {path / 'last.pt'})" if path.is_dir() else ""
        msg = f"no checkpoint file at {path}{hint}"
        raise FileNotFoundError(msg)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for foreign files
        msg = f"not a checkpoint written by omnijet_lib.training: {path}\n    torch.load failed: {type(err).__name__}"
        raise ValueError(msg) from err
    missing = [k for k in CHECKPOINT_KEYS if k not in checkpoint] if isinstance(checkpoint, dict) else CHECKPOINT_KEYS
    if missing:
        msg = f"not a checkpoint written by omnijet_lib.training: {path}\n    missing keys: {', '.join(missing)}"
        raise ValueError(msg)
    return checkpoint
