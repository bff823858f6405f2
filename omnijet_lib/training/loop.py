"""The training loop itself: :func:`train`, with exact resume, atomic checkpoints and a progress bar (see the package docstring)."""

from __future__ import annotations

import io
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from omnijet_lib.atomic import exclusive, save_atomic, write_json_atomic
from omnijet_lib.checkpoints import load_checkpoint
from omnijet_lib.devices import pick_device
from omnijet_lib.training.config import (
    RESUMABLE_CHANGES,
    LossFn,
    TrainingConfig,
    TrainingResult,
    learning_rate_factor,
)
from omnijet_lib.training.samples import (
    DATA_FINGERPRINT,
    Samples,
    check_data,
    data_fingerprint,
    epoch_batches,
    take_rows,
)

# ----------------------------------------------------------------------------- checkpoints


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
        batch = tuple(take_rows(t, slice(start, start + batch_size), device) for t in data)
        loss, metrics, weight = _loss_and_metrics(loss_fn, model, batch)
        sums, weights = _add(sums, weights, {"loss": loss.item(), **metrics}, weight)
    return {name: sums[name] / weights[name] for name in sums}


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
    n_train = check_data(train_data, "train_data")
    check_data(val_data, "val_data")
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

    busy = f"another run is training in {run_dir}; wait for it, stop it, or choose another run_dir"
    with exclusive(run_dir / "lock", busy=busy):
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
                    batch = tuple(take_rows(t, idx, device) for t in train_data)
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
                write_json_atomic(state.history, run_dir / "history.json")
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
