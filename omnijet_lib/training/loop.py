"""The training loop itself: :func:`train`, with exact resume, atomic checkpoints and a progress bar (see the package docstring)."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from omnijet_lib.atomic import exclusive, save_atomic, write_json_atomic
from omnijet_lib.checkpoints import load_checkpoint
from omnijet_lib.devices import autocast, pick_device
from omnijet_lib.training.config import (
    LossFn,
    TrainingConfig,
    TrainingResult,
    learning_rate_factor,
)
from omnijet_lib.training.distributed import LossModule, Processes, data_parallel, join_processes, process_device
from omnijet_lib.training.run_checks import (
    check_loadable,
    check_processes_agree,
    check_same_config,
    check_same_description,
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
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: _RunState,
    config: TrainingConfig,
    describe: dict,
    process_rngs: list[dict],
    scaler: torch.amp.GradScaler,
) -> dict:
    """The whole state of a run; ``process_rngs`` is every training process's RNG state, in rank order."""
    return ({"grad_scaler": scaler.state_dict()} if scaler.is_enabled() else {}) | {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": state.epoch,
        "step_in_epoch": state.step_in_epoch,
        "global_step": state.global_step,
        "best_val_loss": state.best_val_loss,
        "best_epoch": state.best_epoch,
        "stopped_early": state.stopped_early,
        "history": state.history,
        "rng": process_rngs[0],
        "process_rngs": process_rngs,  # one per torchrun process: a resumed run needs each rank's own
        "train_sums": state.sums,
        "train_weights": state.weights,
        "epoch_seconds": state.seconds,
        "training_config": asdict(config),
        "describe": describe,
    }


def _state_from(checkpoint: dict, processes: Processes) -> _RunState:
    # Checkpoints written before runs could be distributed hold rank 0's RNG alone.
    rngs = checkpoint.get("process_rngs", [checkpoint["rng"]])
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
        rng=rngs[processes.rank],
    )


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
    model: nn.Module,
    data: tuple[Samples, ...],
    loss_fn: LossFn,
    batch_size: int,
    device: torch.device,
    processes: Processes,
) -> dict[str, float]:
    """Loss and metrics over ``data`` in eval mode, means over the loss's units; the caller restores train mode.

    Each process validates its own part of ``data``; the means are over all parts.
    """
    model.eval()
    sums, weights = {}, {}
    part = processes.shard(len(data[0]))
    for start in range(part.start, part.stop, batch_size):
        batch = tuple(take_rows(t, slice(start, min(start + batch_size, part.stop)), device) for t in data)
        loss, metrics, weight = _loss_and_metrics(loss_fn, model, batch)
        sums, weights = _add(sums, weights, {"loss": loss.item(), **metrics}, weight)
    if processes.distributed:  # sums and units of every part; one process keeps its own numbers bit for bit
        sums = processes.sum(sums, device)
        weights = processes.sum(weights, device)
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
    check_loadable(describe)
    # Stored with the run, so that a run_dir reused with other data (a classifier test of another
    # generated sample, another training subset) is refused instead of resumed or returned as if trained on it.
    describe = {**describe, DATA_FINGERPRINT: data_fingerprint(train_data, val_data)}
    processes = join_processes()  # one process, or this one's rank among torchrun's
    device = process_device(pick_device(config.device), processes)
    check_processes_agree(processes, config, describe, n_train, len(val_data[0]))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"

    model.to(device)
    if config.tf32 and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    # fp16's narrow range: the loss is scaled up before backward and the gradients down before the step.
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)

    busy = f"another run is training in {run_dir}; wait for it, stop it, or choose another run_dir"
    # Rank 0 holds the folder for all processes, and alone writes to it.
    with exclusive(run_dir / "lock", busy=busy) if processes.main else contextlib.nullcontext():
        # Temporaries (atomic.temporary_path: <name>.<pid>.tmp) of a run that was killed; we hold the lock.
        for name in ("last.pt", "best.pt", "history.json"):
            for stale in run_dir.glob(f"{name}.*.tmp") if processes.main else ():
                stale.unlink()

        # Models draw from torch's RNG (dropout, dead-code replacement); every rank from its own stream.
        torch.manual_seed(processes.torch_seed(config.seed))
        # Rank 0 reads the checkpoint and hands it to the others: the run_dir need not be on a shared disk.
        checkpoint = processes.from_main(load_checkpoint(last_path) if processes.main and last_path.exists() else None)
        if checkpoint is not None:
            check_same_config(checkpoint["training_config"], config, last_path)
            check_same_description(checkpoint["describe"], describe, last_path)
            try:
                model.load_state_dict(checkpoint["model"])
            except RuntimeError as err:
                msg = f"{last_path} does not fit this model; choose another run_dir or delete it\n{err}"
                raise ValueError(msg) from None
            optimizer.load_state_dict(checkpoint["optimizer"])
            if scaler.is_enabled() and "grad_scaler" in checkpoint:
                scaler.load_state_dict(checkpoint["grad_scaler"])
            finished = checkpoint["stopped_early"] or checkpoint["epoch"] >= config.epochs
            written_by = len(checkpoint.get("process_rngs", [None]))
            if not finished and written_by != processes.world_size:
                msg = (
                    f"{last_path} was written by {written_by} training process(es), and {processes.world_size} "
                    f"would continue it: resume with the same number (torchrun --nproc-per-node), "
                    f"or choose another run_dir"
                )
                raise ValueError(msg)
            state = _state_from(checkpoint, processes) if not finished else _state_from(checkpoint, Processes())
            _set_rng_state(state.rng, device)
            del checkpoint
        else:
            state = _RunState(rng=_rng_state(device))

        talk = progress and processes.main
        if state.stopped_early or state.epoch >= config.epochs:
            if talk:
                print(f"{run_dir}: finished after {len(state.history)} epochs; returning its result")
        else:
            if talk and state.global_step:
                print(f"{run_dir}: resuming at epoch {state.epoch + 1}, batch {state.step_in_epoch}")
            state = _train_epochs(
                model, train_data, n_train, val_data, loss_fn, config, run_dir, state, device, optimizer, processes, scaler,
                evaluate=evaluate, describe=describe, progress=talk, on_step=on_step, lengths=lengths,
            )  # fmt: skip
    processes.wait_for_main()  # rank 0 has written the last checkpoints before anyone reads them

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
    processes: Processes,
    scaler: torch.amp.GradScaler,
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

    def save(run_state: _RunState, *paths: Path) -> None:  # a collective: every rank calls it at the same point
        rngs = processes.gather(run_state.rng)
        if processes.main:
            checkpoint = _checkpoint(model, optimizer, run_state, config, describe, rngs, scaler)
            for path in paths:
                save_atomic(checkpoint, path)

    loss_module = data_parallel(LossModule(model, loss_fn), processes, device)  # DDP for several processes
    if config.compile:
        # dynamic: batches are cut to their longest sample, so every batch may have another shape.
        loss_module = torch.compile(loss_module, dynamic=True)

    def step_loss(_model: nn.Module, batch: tuple[torch.Tensor, ...]):  # loss_fn's signature, through the module
        return loss_module(batch)

    model.train()
    # One bar for the whole run, not one per epoch: a notebook that trains several models shows one line
    # each, named by model and folder.  Every epoch has the same number of batches (epoch_batches drops
    # no sample), so a resumed run's bar starts where the stopped one was.
    per_epoch = processes.steps_per_epoch(n_train, config.batch_size)
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
                batches = epoch_batches(
                    n_train, config.batch_size, config.seed, epoch,
                    rank=processes.rank, world_size=processes.world_size, lengths=lengths,
                )  # fmt: skip
                started = time.perf_counter() - state.seconds
                at = {"epoch": f"{epoch + 1}/{config.epochs}"}
                for step in range(state.step_in_epoch, per_epoch):
                    # A rank whose shard has one batch fewer steps along on a batch it has seen, with weight 0.
                    real = step < len(batches)
                    batch = tuple(take_rows(t, batches[step if real else 0], device) for t in train_data)
                    with autocast(config.precision, device):
                        loss, metrics, weight = _loss_and_metrics(step_loss, model, batch)
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
                        progress = (epoch + state.step_in_epoch / per_epoch) / config.epochs
                        _set_learning_rate(optimizer, learning_rate_factor(config, progress))
                    if processes.distributed:  # the step's loss and metrics over all shards
                        local_weight = weight if real else 0
                        means, weight = processes.weighted_means({"loss": loss_value, **metrics}, local_weight, device)
                        loss_value, metrics = means.pop("loss"), means
                        # DDP averages the ranks' gradients; scaled so, the average is the whole batch's gradient
                        loss = loss * (local_weight * processes.world_size / weight)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()  # the loss itself unless fp16
                    if config.max_grad_norm is not None:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                    dirty = True
                    scaler.step(optimizer)  # skipped (and the scale lowered) if fp16 gradients overflowed
                    scaler.update()
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
                        save(state, last_path)
                    if on_step is not None:
                        on_step(state.global_step)

                with autocast(config.precision, device):
                    val = _validate(model, val_data, loss_fn, config.batch_size, device, processes)
                if not math.isfinite(val["loss"]):
                    msg = f"validation loss is {val['loss']} after epoch {epoch}; this epoch was not saved"
                    raise FloatingPointError(msg)
                # Rank 0 evaluates (it may generate a sample) and tells the others: all then pick the same best epoch.
                extra = processes.from_main(evaluate(model) if evaluate is not None and processes.main else {})
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
                # best.pt before the state moves on: interrupted in between, the resumed run redoes this epoch end.
                if improved:
                    save(finished, best_path)
                state = finished
                save(state, last_path)
                if processes.main:
                    write_json_atomic(state.history, run_dir / "history.json")
                if state.stopped_early:
                    bar.total = bar.n  # the run ends here: a full bar, not one stuck short of its planned total
                    bar.refresh()
                    break
    except KeyboardInterrupt:
        if processes.distributed:
            # Saving needs every rank's RNG, and the other ranks may be gone: the last periodic checkpoint
            # stays, and a resumed run continues exactly from it.
            if processes.main:
                print(
                    f"interrupted: {last_path} holds the last periodic checkpoint; run again to resume", file=sys.stderr
                )
        elif not dirty:
            save_atomic(_checkpoint(model, optimizer, state, config, describe, [state.rng], scaler), last_path)
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
