"""The one training loop of the project: tokenizers, backbone, classifiers, fine-tuning.

    result = train(model, (x_train,), (x_val,), loss_fn, TrainingConfig(epochs=20), "runs/vqvae")

Everything model-specific lives in ``loss_fn(model, batch) -> StepOutput``; this
loop knows nothing about jets, codebooks or tokens.

Runs resume, exactly.  ``run_dir/last.pt`` is written every ``checkpoint_every``
optimizer steps, at every epoch end and on Ctrl-C, and calling :func:`train`
again with the same ``run_dir`` continues from it.  The batch order depends only
on (seed, epoch), and the checkpoint holds torch's RNG state and the position
inside the epoch, so on CPU a run that was interrupted and resumed ends with
bit-identical weights and history to one that never stopped -- also when it
resumes from an older checkpoint, as after ``kill -9``.

Files in ``run_dir``:

    last.pt       the latest consistent state (read it with :func:`load_checkpoint`)
    best.pt       the state after the epoch with the lowest validation loss
    history.json  one record per finished epoch, for humans
    lock          held while a run trains here, so two runs cannot share the folder

Epochs count from 0: ``result.history[result.best_epoch]`` is the best epoch's record.

Why not PyTorch Lightning: the loop is a few hundred lines a physicist can read top to
bottom, and what the project needs of it -- a resume that is exact to the bit
(RNG state and position inside the epoch), atomic checkpoints, batches of similar
lengths, data read from disk as a batch asks for it, an ``evaluate`` hook that
generates -- is in those lines, with no framework between the notebook and the
model to learn, pin and debug.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from omnijet_lib.atomic import atomic_path

# ----------------------------------------------------------------------------- device


def _available_devices() -> list[str]:
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def pick_device(device: str = "auto") -> torch.device:
    """The device to train on: ``"auto"`` takes cuda, else mps, else cpu; any other name is checked."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    choices = ", ".join(repr(d) for d in _available_devices())
    try:
        picked = torch.device(device)
    except (RuntimeError, TypeError):
        msg = f"unknown device {device!r}\n    Available devices: {choices}"
        raise ValueError(msg) from None
    if picked.type == "cuda":
        ok = torch.cuda.is_available() and (picked.index is None or picked.index < torch.cuda.device_count())
    elif picked.type == "mps":
        ok = torch.backends.mps.is_available()
    else:
        ok = picked.type == "cpu"  # xla, meta, ...: valid torch devices this loop does not support
    if not ok:
        msg = f"device {device!r} is not available on this machine\n    Available devices: {choices}"
        raise ValueError(msg)
    return picked


# ----------------------------------------------------------------------------- config and types


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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

    def __post_init__(self):
        rules = [
            ("epochs", _is_int(self.epochs) and self.epochs >= 1, "an integer >= 1"),
            ("batch_size", _is_int(self.batch_size) and self.batch_size >= 1, "an integer >= 1"),
            ("learning_rate", self.learning_rate >= 0, ">= 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("seed", _is_int(self.seed) and self.seed >= 0, "an integer >= 0"),
            ("checkpoint_every", _is_int(self.checkpoint_every) and self.checkpoint_every >= 1, "an integer >= 1"),
            ("patience", self.patience is None or (_is_int(self.patience) and self.patience >= 1), "None or >= 1"),
            ("max_grad_norm", self.max_grad_norm is None or self.max_grad_norm > 0, "None or > 0"),
            ("best_by", isinstance(self.best_by, str) and bool(self.best_by), "a validation metric's name"),
            ("lr_schedule", self.lr_schedule in LR_SCHEDULES, f"one of {LR_SCHEDULES}"),
            ("warmup", 0 <= self.warmup < 1, "a fraction of the run, 0 <= warmup < 1"),
        ]
        bad = [f"{name}={getattr(self, name)!r} (must be {rule})" for name, ok, rule in rules if not ok]
        if bad:
            msg = "invalid TrainingConfig: " + ", ".join(bad)
            raise ValueError(msg)


# Fields a resumed run may change: they do not alter what is computed (epochs only extends it).
RESUMABLE_CHANGES = ("epochs", "device", "checkpoint_every")


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


# ----------------------------------------------------------------------------- batches


# With lengths given, batches are formed inside windows of this many batches, sorted by length.
LENGTH_WINDOW = 50


def epoch_batches(
    n: int,
    batch_size: int,
    seed: int,
    epoch: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    lengths: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """The sample indices of every batch of one epoch, for process ``rank`` of ``world_size``.

    The order is a permutation from a generator seeded by (seed, epoch) alone -- not
    by torch's global RNG, which the model draws from -- so a resumed run rebuilds
    the epoch and skips the batches it has done.  The last batch may be smaller:
    no sample is dropped.

    Shards: rank r takes every ``world_size``-th index of the permutation, so the
    shards are disjoint, cover the epoch together, and batch j of all ranks
    together is the slice of the permutation that one process with batch size
    ``batch_size * world_size`` would see.  Shards may differ by one batch.

    What DDP (torchrun) would add to :func:`train`: ``init_process_group``; the
    model wrapped in ``DistributedDataParallel`` and the epoch loop run inside its
    ``join()`` (for the uneven last batch); ``rank``/``world_size`` passed here; the
    loss and metric sums all-reduced before they are logged or compared for early
    stopping; checkpoints, history.json and progress bars written by rank 0 only.

    ``lengths`` (one per sample, e.g. tokens per sequence) groups samples of
    similar length into a batch, so that a model that cuts the batch to its
    longest sample computes little padding: the shard is cut into windows of
    ``LENGTH_WINDOW`` batches, each window is sorted by length and split into
    batches, and the batches are shuffled.  Still a function of (seed, epoch).
    """
    if not (_is_int(batch_size) and batch_size >= 1):
        msg = f"batch_size must be an integer >= 1, got {batch_size!r}"
        raise ValueError(msg)
    if not (_is_int(world_size) and world_size >= 1 and _is_int(rank) and 0 <= rank < world_size):
        msg = f"need 0 <= rank < world_size, got rank={rank!r}, world_size={world_size!r}"
        raise ValueError(msg)
    # SeedSequence mixes (seed, epoch) into one well-spread 64-bit seed: no two pairs share a stream.
    mixed = int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0])
    generator = torch.Generator().manual_seed(mixed)
    shard = torch.randperm(n, generator=generator)[rank::world_size]
    if lengths is None:
        return list(shard.split(batch_size))
    if len(lengths) != n:
        msg = f"lengths has {len(lengths)} entries for {n} samples"
        raise ValueError(msg)
    lengths = torch.as_tensor(lengths)
    windows = shard.split(LENGTH_WINDOW * batch_size)
    batches = [b for w in windows for b in w[lengths[w].argsort(stable=True)].split(batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator)]


# ----------------------------------------------------------------------------- checkpoints


def save_atomic(obj, path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, ``os.replace``: readers never see half a file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _write_json(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1))


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


def load_checkpoint(path, *, map_location="cpu") -> dict:
    """A checkpoint written by :func:`train` (keys: ``CHECKPOINT_KEYS``), loaded with ``weights_only=True``."""
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


def _check_loadable(describe: dict) -> None:
    """Fail before training, not at the first load, if ``describe`` would not survive ``weights_only=True``."""
    buffer = io.BytesIO()
    torch.save(describe, buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, weights_only=True)
    except Exception as err:
        lines = str(err).splitlines()
        detail = next((line.strip() for line in lines if "Unsupported" in line), lines[0] if lines else "")
        msg = (
            "describe must hold only dicts, lists, tuples, str, int, float, bool, None and tensors, "
            f"so that checkpoints load with weights_only=True\n    {detail}"
        )
        raise ValueError(msg) from None


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:  # absent if the run started on another device
        torch.cuda.set_rng_state(state["cuda"], device)
    elif device.type == "mps" and "mps" in state:
        torch.mps.set_rng_state(state["mps"])


@contextmanager
def _exclusive(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir``: two runs writing one last.pt would undo each other."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    with open(run_dir / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            msg = f"another run is training in {run_dir}; wait for it, stop it, or choose another run_dir"
            raise RuntimeError(msg) from None
        yield  # the OS releases the lock when the file closes, also after kill -9


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True)
class _RunState:
    """Where a run is.  Replaced, never mutated, at consistent points: an interrupt sees the old or the new."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = -1
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    rng: dict[str, torch.Tensor] = field(default_factory=dict)  # torch's RNG as of this point


def _checkpoint(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: _RunState, config: TrainingConfig, describe: dict
) -> dict:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": state.epoch,
        "step_in_epoch": state.step_in_epoch,
        "global_step": state.global_step,
        "best_val_loss": state.best_val_loss,
        "best_epoch": state.best_epoch,
        "stopped_early": state.stopped_early,
        "history": state.history,
        "rng": state.rng,
        "train_sums": state.sums,
        "train_weights": state.weights,
        "epoch_seconds": state.seconds,
        "training_config": asdict(config),
        "describe": describe,
    }


def _state_from(checkpoint: dict) -> _RunState:
    return _RunState(
        epoch=checkpoint["epoch"],
        step_in_epoch=checkpoint["step_in_epoch"],
        global_step=checkpoint["global_step"],
        best_val_loss=checkpoint["best_val_loss"],
        best_epoch=checkpoint["best_epoch"],
        stopped_early=checkpoint["stopped_early"],
        history=checkpoint["history"],
        sums=checkpoint["train_sums"],
        weights=checkpoint["train_weights"],
        seconds=checkpoint["epoch_seconds"],
        rng=checkpoint["rng"],
    )


def _check_same_config(stored: dict, config: TrainingConfig, path: Path) -> None:
    given = asdict(config)
    # A field added since the checkpoint was written ran at its default (which keeps the old behaviour).
    stored = {f.name: f.default for f in fields(TrainingConfig) if f.name not in stored} | stored
    differing = [
        f"{name}: {stored.get(name, '(absent)')!r} in the checkpoint, {given.get(name, '(absent)')!r} given"
        for name in {**stored, **given}
        if name not in RESUMABLE_CHANGES and stored.get(name, "(absent)") != given.get(name, "(absent)")
    ]
    if differing:
        msg = (
            f"{path} was written by a run with another training config:\n    "
            + "\n    ".join(differing)
            + f"\nchoose another run_dir, or delete {path.parent} to start over "
            f"(only {', '.join(RESUMABLE_CHANGES)} may change when resuming)"
        )
        raise ValueError(msg)


DATA_FINGERPRINT = "data_fingerprint"  # the key of data_fingerprint in a checkpoint's describe
FINGERPRINT_ROWS = 512  # rows of each dataset hashed: enough to tell two datasets apart, cheap from disk


def data_fingerprint(*datasets: tuple[Samples, ...]) -> str:
    """A digest of the sizes and of up to ``FINGERPRINT_ROWS`` evenly spaced rows of every tensor or row source.

    Two runs on the same data agree; data that differ in size, or in any of the
    hashed rows (a new sample, another subset, another order), almost surely do not.
    Only these rows are read, so a row source on disk costs a few hundred reads.
    """
    digest = hashlib.sha256()
    for data in datasets:
        for samples in data:
            n = len(samples)
            rows = torch.linspace(0, n - 1, min(n, FINGERPRINT_ROWS)).round().long().unique()
            values = samples[rows] if isinstance(samples, torch.Tensor) else torch.as_tensor(samples[rows])
            values = values.detach().cpu().contiguous()
            digest.update(f"{n}|{tuple(values.shape)}|{values.dtype}|".encode())
            digest.update(values.numpy().tobytes())
    return digest.hexdigest()[:16]


def _check_same_description(stored: dict, given: dict, path: Path) -> None:
    """Refuse to continue (or return) a run whose model or loss ``describe``, or whose data, differs from this one's.

    Weights of the same shapes would load, and a finished run would come back as if trained
    with, say, another loss weight, or on another sample.  A checkpoint written before runs
    recorded their data has no fingerprint to compare, and is taken at its word.
    """
    if DATA_FINGERPRINT not in stored:
        given = {k: v for k, v in given.items() if k != DATA_FINGERPRINT}
    elif stored[DATA_FINGERPRINT] != given.get(DATA_FINGERPRINT):
        msg = (
            f"{path} was written by a run on other data (its training or validation samples differ from "
            f"these); choose another run_dir, or delete {path.parent} to start over"
        )
        raise ValueError(msg)
    stored, given = _flatten(stored), _flatten(given)
    differing = [
        f"{name}: {stored.get(name, '(absent)')!r} in the checkpoint, {given.get(name, '(absent)')!r} given"
        for name in sorted(stored.keys() | given.keys())
        if not _same(stored.get(name, "(absent)"), given.get(name, "(absent)"))
    ]
    if differing:
        msg = (
            f"{path} was written by a run of another model or loss:\n    "
            + "\n    ".join(differing)
            + f"\nchoose another run_dir, or delete {path.parent} to start over"
        )
        raise ValueError(msg)


def _flatten(d: dict, prefix: str = "") -> dict:
    """{"config": {"alpha": 10}} -> {"config.alpha": 10}: nested dicts to dotted keys."""
    flat = {}
    for key, value in d.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a.cpu(), b.cpu())
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


class RowSource(Protocol):
    """Samples read as needed, e.g. from a file (:meth:`omnijet_lib.data.token_dataset.TokenDataset.rows`).

    ``source[index]`` takes a LongTensor of sample indices or a slice and returns a
    tensor whose first dimension is those samples, as indexing a tensor would.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: torch.Tensor | slice) -> torch.Tensor: ...


# One element of train's data: a tensor in memory, or a source that reads samples when asked.
Samples = torch.Tensor | RowSource


def is_row_source(samples: object) -> bool:
    """A sample source that is not a tensor: anything with ``len`` and ``[index]`` but containers of values."""
    if isinstance(samples, (torch.Tensor, np.ndarray, list, tuple, str, bytes, dict)):
        return False
    return hasattr(samples, "__len__") and hasattr(samples, "__getitem__")


def rows_in_order(samples: Samples, order: torch.Tensor) -> Samples:
    """The samples ``order`` of ``samples``: a tensor is indexed, a row source reads nothing until asked."""
    return samples[order] if isinstance(samples, torch.Tensor) else _RowsInOrder(samples, order)


class _RowsInOrder:
    """A row source's samples in another order (e.g. a validation set by length), without reading them."""

    def __init__(self, source: RowSource, order: torch.Tensor):
        self.source, self.order = source, torch.as_tensor(order, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: torch.Tensor | slice) -> torch.Tensor:
        return self.source[self.order[index]]


def _describe(samples: Samples) -> str:
    """A tensor's shape, or a row source's type and length, for error messages."""
    if isinstance(samples, torch.Tensor):
        return str(tuple(samples.shape))
    return f"{type(samples).__name__} of {len(samples)}"


def _check_data(data: tuple[Samples, ...], name: str) -> int:
    """The number of samples in ``data``, a non-empty tuple of tensors or row sources sharing the first dimension."""
    if not isinstance(data, (tuple, list)) or not data:
        msg = f"{name} must be a tuple of tensors or row sources, e.g. (x, y) or (x,); got {type(data).__name__}"
        raise ValueError(msg)
    bad = [type(t).__name__ for t in data if not (isinstance(t, torch.Tensor) or is_row_source(t))]
    if bad:
        msg = (
            f"{name} must be a tuple of tensors or row sources (len() and [indices] -> tensor, "
            f"e.g. TokenDataset.rows(...)); got {', '.join(bad)}"
        )
        raise ValueError(msg)
    lengths = {len(t) if not isinstance(t, torch.Tensor) or t.ndim else 0 for t in data}
    if len(lengths) != 1 or 0 in lengths:
        shapes = ", ".join(_describe(t) for t in data)
        msg = f"{name}: the tensors must share a non-empty first (sample) dimension; got shapes [{shapes}]"
        raise ValueError(msg)
    return lengths.pop()


def _take(samples: Samples, index: torch.Tensor | slice, device: torch.device) -> torch.Tensor:
    """Samples ``index`` on ``device``; a row source reads them now and must give a tensor."""
    batch = samples[index]
    if not isinstance(batch, torch.Tensor):
        msg = f"a row source must return tensors; {type(samples).__name__}[...] returned {type(batch).__name__}"
        raise TypeError(msg)
    return batch.to(device, non_blocking=True)


def _loss_and_metrics(loss_fn: LossFn, model: nn.Module, batch: tuple[torch.Tensor, ...]):
    """The loss, its metrics and their weight (:class:`StepOutput`) of one batch, checked."""
    out = loss_fn(model, batch)
    if not isinstance(out, tuple) or len(out) not in (2, 3):
        msg = f"loss_fn must return StepOutput(loss, metrics), got {type(out).__name__}"
        raise TypeError(msg)
    loss, metrics, weight = (*out, None) if len(out) == 2 else out
    weight = len(batch[0]) if weight is None else weight
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        msg = f"loss_fn must return a scalar tensor as the loss, got {getattr(loss, 'shape', type(loss).__name__)}"
        raise ValueError(msg)
    if "loss" in metrics:
        msg = "loss_fn metrics must not be called 'loss' (the loss is logged already)"
        raise ValueError(msg)
    return loss, {name: float(value) for name, value in metrics.items()}, weight


def _add(sums: dict, weights: dict, values: dict[str, float], n: float) -> tuple[dict, dict]:
    """New running sums with ``values`` (means over ``n`` units) added; the old dicts stay as they were."""
    sums, weights = dict(sums), dict(weights)
    for name, value in values.items():
        sums[name] = sums.get(name, 0.0) + value * n
        weights[name] = weights.get(name, 0) + n
    return sums, weights


@torch.no_grad()
def _validate(
    model: nn.Module, data: tuple[Samples, ...], loss_fn: LossFn, batch_size: int, device: torch.device
) -> dict[str, float]:
    """Loss and metrics over ``data`` in eval mode, means over the loss's units; the caller restores train mode."""
    model.eval()
    sums, weights = {}, {}
    for start in range(0, len(data[0]), batch_size):
        batch = tuple(_take(t, slice(start, start + batch_size), device) for t in data)
        loss, metrics, weight = _loss_and_metrics(loss_fn, model, batch)
        sums, weights = _add(sums, weights, {"loss": loss.item(), **metrics}, weight)
    return {name: sums[name] / weights[name] for name in sums}


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


def _set_learning_rate(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Each group's learning rate: ``factor`` times its initial value."""
    for group in optimizer.param_groups:
        group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor


def _epoch_record(
    epoch: int, state: _RunState, val: dict, extra: dict, lr: float, seconds: float
) -> dict[str, float | int]:
    record = {"epoch": epoch, "global_step": state.global_step}
    record |= {f"train_{name}": state.sums[name] / state.weights[name] for name in state.sums}
    record |= {f"val_{name}": value for name, value in val.items()}
    for name, value in extra.items():
        if name in record or name in ("lr", "seconds"):
            msg = f"evaluate returned {name!r}, which the history records already; rename it"
            raise ValueError(msg)
        record[name] = float(value)
    return record | {"lr": lr, "seconds": seconds}


def train(
    model: nn.Module,
    train_data: tuple[Samples, ...],
    val_data: tuple[Samples, ...],
    loss_fn: LossFn,
    config: TrainingConfig,
    run_dir: str | os.PathLike,
    *,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    describe: dict | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    lengths: torch.Tensor | None = None,
) -> TrainingResult:
    """Train ``model`` on ``train_data``, or continue the run saved in ``run_dir``.

    ``train_data`` / ``val_data`` are tuples of CPU tensors sharing the sample
    dimension; each batch moves to the device as ``loss_fn(model, batch)`` receives
    it.  An element may instead be a :class:`RowSource` (``len`` and ``[indices]`` or
    ``[slice]`` -> tensor), which reads each batch when it is needed: data larger than
    memory, e.g. ``TokenDataset.rows(indices)`` of token files.
    ``evaluate(model)`` runs after each validation with the model in eval
    mode (``torch.no_grad`` is up to it); it must not change the model, and its
    numbers join the epoch's record; ``config.best_by`` may name one of them (e.g. a
    distance of a small generated sample to real data, which tracks generation better
    than the validation loss).  ``describe`` is stored in every checkpoint.  ``optimizer``
    defaults to AdamW with the config's learning rate and weight decay; the
    config's values are ignored for any other.  ``on_step(global_step)`` is called
    after each optimizer step.  ``lengths`` (per training sample) makes batches of
    similar lengths (:func:`epoch_batches`) for a ``loss_fn`` that trims padding.

    If ``run_dir/last.pt`` exists the run continues from it: model, optimizer, RNG
    and position inside the epoch.  Its training config (but for ``RESUMABLE_CHANGES``)
    and its ``describe`` must be the ones given; otherwise a clear error names what differs.  A run that has finished (or stopped early)
    returns its result at once, with ``model`` holding its last weights.  Ctrl-C
    saves ``last.pt`` before it propagates.  Randomness must come from torch's RNG
    (dropout, ``torch.randint``...) for a resumed run to be exact.
    """
    n_train = _check_data(train_data, "train_data")
    _check_data(val_data, "val_data")
    describe = {} if describe is None else describe
    _check_loadable(describe)
    # Stored with the run, so that a run_dir reused with other data (a classifier test of another
    # generated sample, another training subset) is refused instead of resumed or returned as if trained on it.
    describe = {**describe, DATA_FINGERPRINT: data_fingerprint(train_data, val_data)}
    device = pick_device(config.device)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"

    model.to(device)
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)

    with _exclusive(run_dir):
        # Temporaries (atomic.temporary_path: <name>.<pid>.tmp) of a run that was killed; we hold the lock.
        for name in ("last.pt", "best.pt", "history.json"):
            for stale in run_dir.glob(f"{name}.*.tmp"):
                stale.unlink()

        torch.manual_seed(config.seed)  # models draw from torch's RNG (dropout, dead-code replacement)
        if last_path.exists():
            checkpoint = load_checkpoint(last_path)
            _check_same_config(checkpoint["training_config"], config, last_path)
            _check_same_description(checkpoint["describe"], describe, last_path)
            try:
                model.load_state_dict(checkpoint["model"])
            except RuntimeError as err:
                msg = f"{last_path} does not fit this model; choose another run_dir or delete it\n{err}"
                raise ValueError(msg) from None
            optimizer.load_state_dict(checkpoint["optimizer"])
            state = _state_from(checkpoint)
            _set_rng_state(state.rng, device)
            del checkpoint
        else:
            state = _RunState(rng=_rng_state(device))

        if state.stopped_early or state.epoch >= config.epochs:
            if progress:
                print(f"{run_dir}: finished after {len(state.history)} epochs; returning its result")
        else:
            if progress and state.global_step:
                print(f"{run_dir}: resuming at epoch {state.epoch + 1}, batch {state.step_in_epoch}")
            state = _train_epochs(
                model, train_data, n_train, val_data, loss_fn, config, run_dir, state, device, optimizer,
                evaluate=evaluate, describe=describe, progress=progress, on_step=on_step, lengths=lengths,
            )  # fmt: skip

    return TrainingResult(
        history=list(state.history),
        best_epoch=state.best_epoch,
        best_val_loss=state.best_val_loss,
        best_checkpoint=best_path,
        last_checkpoint=last_path,
    )


def _train_epochs(
    model: nn.Module,
    train_data: tuple[Samples, ...],
    n_train: int,
    val_data: tuple[Samples, ...],
    loss_fn: LossFn,
    config: TrainingConfig,
    run_dir: Path,
    state: _RunState,
    device: torch.device,
    optimizer: torch.optim.Optimizer,
    *,
    evaluate: Callable[[nn.Module], dict[str, float]] | None,
    describe: dict,
    progress: bool,
    on_step: Callable[[int], None] | None,
    lengths: torch.Tensor | None,
) -> _RunState:
    """The loop of :func:`train` from ``state`` on; returns the final state."""
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    # While optimizer.step() runs, the weights may be half updated: no consistent state to save on Ctrl-C
    # then, and the last periodic checkpoint stays (resuming from it is exact too).
    dirty = False
    model.train()
    # One bar for the whole run, not one per epoch: a notebook that trains several models shows one line
    # each, named by model and folder.  Every epoch has the same number of batches (epoch_batches drops
    # no sample), so a resumed run's bar starts where the stopped one was.
    per_epoch = math.ceil(n_train / config.batch_size)
    bar = tqdm(
        total=config.epochs * per_epoch,
        initial=state.epoch * per_epoch + state.step_in_epoch,
        desc=_run_label(model, describe, run_dir),
        unit="batch",
        disable=not progress,
    )
    # The last validation loss stays on the bar through the next epoch; a resumed run has it in its history.
    postfix = {"val_loss": f"{state.history[-1]['val_loss']:.4g}"} if state.history else {}
    try:
        # Inside the try: the bar closes before the Ctrl-C message prints, and on every other exit too.
        with bar:
            for epoch in range(state.epoch, config.epochs):
                batches = epoch_batches(n_train, config.batch_size, config.seed, epoch, lengths=lengths)
                started = time.perf_counter() - state.seconds
                at = {"epoch": f"{epoch + 1}/{config.epochs}"}
                for idx in batches[state.step_in_epoch :]:
                    batch = tuple(_take(t, idx, device) for t in train_data)
                    loss, metrics, weight = _loss_and_metrics(loss_fn, model, batch)
                    loss_value = loss.item()
                    if not math.isfinite(loss_value):
                        msg = (
                            f"training loss is {loss_value} at epoch {epoch} step {state.step_in_epoch} "
                            f"(global step {state.global_step}); this step was not taken or saved"
                        )
                        raise FloatingPointError(msg)
                    if config.best_by not in ("loss", *metrics) and evaluate is None:  # known now, not after an epoch
                        msg = f"best_by={config.best_by!r} is not a validation number: use 'loss' or one of {sorted(metrics)}"
                        raise ValueError(msg)
                    if config.lr_schedule != "constant" or config.warmup > 0:
                        progress = (epoch + state.step_in_epoch / len(batches)) / config.epochs
                        _set_learning_rate(optimizer, learning_rate_factor(config, progress))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if config.max_grad_norm is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                    dirty = True
                    optimizer.step()
                    sums, weights = _add(state.sums, state.weights, {"loss": loss_value, **metrics}, weight)
                    state = replace(
                        state,
                        step_in_epoch=state.step_in_epoch + 1,
                        global_step=state.global_step + 1,
                        sums=sums,
                        weights=weights,
                        seconds=time.perf_counter() - started,
                        rng=_rng_state(device),
                    )
                    dirty = False
                    # Postfix first, so that the line update() draws shows this step's loss.
                    bar.set_postfix(at | {"loss": f"{sums['loss'] / weights['loss']:.4g}"} | postfix, refresh=False)
                    bar.update()
                    if state.global_step % config.checkpoint_every == 0:
                        save_atomic(_checkpoint(model, optimizer, state, config, describe), last_path)
                    if on_step is not None:
                        on_step(state.global_step)

                val = _validate(model, val_data, loss_fn, config.batch_size, device)
                if not math.isfinite(val["loss"]):
                    msg = f"validation loss is {val['loss']} after epoch {epoch}; this epoch was not saved"
                    raise FloatingPointError(msg)
                extra = evaluate(model) if evaluate is not None else {}
                model.train()
                lr = optimizer.param_groups[0]["lr"]
                record = _epoch_record(epoch, state, val, extra, lr, time.perf_counter() - started)
                postfix = {"val_loss": f"{val['loss']:.4g}"}
                bar.set_postfix(at | {"loss": f"{record['train_loss']:.4g}"} | postfix)

                scores = val | extra  # best_by may name what evaluate measures, e.g. on a generated sample
                if config.best_by not in scores:
                    msg = f"best_by={config.best_by!r} is neither a validation number nor one evaluate returned: {sorted(scores)}"
                    raise ValueError(msg)
                score = scores[config.best_by]
                improved = score < state.best_val_loss
                best_epoch = epoch if improved else state.best_epoch
                finished = replace(
                    state,
                    epoch=epoch + 1,
                    step_in_epoch=0,
                    best_val_loss=score if improved else state.best_val_loss,
                    best_epoch=best_epoch,
                    stopped_early=config.patience is not None and epoch - best_epoch >= config.patience,
                    history=[*state.history, record],
                    sums={},
                    weights={},
                    seconds=0.0,
                    rng=_rng_state(device),  # after validation and evaluate, which may draw from it
                )
                checkpoint = _checkpoint(model, optimizer, finished, config, describe)
                # best.pt before the state moves on: interrupted in between, the resumed run redoes this epoch end.
                if improved:
                    save_atomic(checkpoint, best_path)
                state = finished
                save_atomic(checkpoint, last_path)
                _write_json(state.history, run_dir / "history.json")
                if state.stopped_early:
                    bar.total = bar.n  # the run ends here: a full bar, not one stuck short of its planned total
                    bar.refresh()
                    break
    except KeyboardInterrupt:
        if not dirty:
            save_atomic(_checkpoint(model, optimizer, state, config, describe), last_path)
            where = f"epoch {state.epoch + 1}, batch {state.step_in_epoch}"
            print(f"interrupted: saved {last_path} at {where}; call train again to resume", file=sys.stderr)
        raise
    if progress and state.stopped_early:  # printed after the bar has closed, not through its line
        print(f"early stopping: no better validation {config.best_by} for {config.patience} epochs")
    return state


def _run_label(model: nn.Module, describe: dict, run_dir: Path) -> str:
    """What the progress bar calls a run: the model's name from ``describe``, else its class, and the folder."""
    # Tokenizers describe themselves by "kind", the GPTs by "model", the classifiers by "classifier".
    names = [describe.get(key) for key in ("kind", "model", "classifier")]
    name = next((n for n in names if isinstance(n, str) and n), type(model).__name__)
    return f"{name} {run_dir}"
