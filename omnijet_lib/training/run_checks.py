"""Whether a call of :func:`~omnijet_lib.training.loop.train` may continue the run its ``run_dir`` holds.

A checkpoint's weights of the right shapes would load into a model of another
config, loss or data; these checks refuse that, naming what differs, and check
that the processes of a torchrun launch were all given the same run.
"""

from __future__ import annotations

import io
from dataclasses import asdict, fields
from pathlib import Path

import torch

from omnijet_lib.training.config import RESUMABLE_CHANGES, TrainingConfig
from omnijet_lib.training.distributed import Processes
from omnijet_lib.training.samples import DATA_FINGERPRINT


def check_loadable(describe: dict) -> None:
    """Fail before training, not at the first load, if ``describe`` would not survive ``weights_only=True``."""
    buffer = io.BytesIO()
    torch.save(describe, buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, weights_only=True)
    except Exception as err:  # noqa: BLE001 -- pickle raises any of many types on what it cannot load
        lines = str(err).splitlines()
        detail = next((line.strip() for line in lines if "Unsupported" in line), lines[0] if lines else "")
        msg = (
            "describe must hold only dicts, lists, tuples, str, int, float, bool, None and tensors, "
            f"so that checkpoints load with weights_only=True\n    {detail}"
        )
        raise ValueError(msg) from None


def check_same_config(stored: dict, config: TrainingConfig, path: Path) -> None:
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


def check_same_description(stored: dict, given: dict, path: Path) -> None:
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
    stored, given = flatten(stored), flatten(given)
    differing = [
        f"{name}: {stored.get(name, '(absent)')!r} in the checkpoint, {given.get(name, '(absent)')!r} given"
        for name in sorted(stored.keys() | given.keys())
        if not same(stored.get(name, "(absent)"), given.get(name, "(absent)"))
    ]
    if differing:
        msg = (
            f"{path} was written by a run of another model or loss:\n    "
            + "\n    ".join(differing)
            + f"\nchoose another run_dir, or delete {path.parent} to start over"
        )
        raise ValueError(msg)


def check_processes_agree(
    processes: Processes, config: TrainingConfig, describe: dict, n_train: int, n_val: int
) -> None:
    """Under torchrun, refuse on every rank, naming what differs, unless all processes were given the same run.

    Processes that disagree on a learning rate, a model or their data would otherwise
    average gradients of different problems without a word.
    """
    if not processes.distributed:
        return
    if n_train < processes.world_size or n_val < processes.world_size:
        msg = f"{n_train} training and {n_val} validation samples cannot be shared by {processes.world_size} processes"
        raise ValueError(msg)
    mine = flatten({"training_config": asdict(config), "describe": describe})
    everyone = processes.gather(mine)
    differing = sorted(
        f"{name}: {everyone[0].get(name, '(absent)')!r} on rank 0, {theirs.get(name, '(absent)')!r} on rank {rank}"
        for rank, theirs in enumerate(everyone[1:], start=1)
        for name in everyone[0].keys() | theirs.keys()
        if not same(everyone[0].get(name, "(absent)"), theirs.get(name, "(absent)"))
    )
    if differing:
        msg = "the training processes disagree on the run (config, model or data):\n    " + "\n    ".join(differing)
        raise ValueError(msg)


def flatten(d: dict, prefix: str = "") -> dict:
    """{"config": {"alpha": 10}} -> {"config.alpha": 10}: nested dicts to dotted keys."""
    flat = {}
    for key, value in d.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a.cpu(), b.cpu())
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b
