"""The device a model runs on (``"auto"`` picks CUDA, else MPS, else the CPU) and the precision of its arithmetic."""

from __future__ import annotations

import contextlib
import weakref

import torch

# Arithmetic precisions of training and generation: "fp32" everywhere, or torch's autocast to bf16 or
# fp16, which runs matrix products in the smaller type and keeps reductions (softmax, LayerNorm) in fp32.
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


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


def precision_dtype(precision: str) -> torch.dtype:
    """The dtype of a precision's matrix products: ``"fp32"``, ``"bf16"`` or ``"fp16"``; anything else is refused."""
    if precision not in PRECISIONS:
        msg = f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}"
        raise ValueError(msg)
    return PRECISIONS[precision]


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """A context running forward passes in bf16 or fp16 where torch's autocast picks them; nothing for fp32."""
    dtype = precision_dtype(precision)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# Compiled once per module or function and process: torch.compile's own cache is keyed by the code, and a
# fresh wrapper per generate call would look its guards up again at every call.
_COMPILED_FOR_DECODING: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def for_decoding(step, compile: bool = False):
    """``step`` (a module or function a generation loop calls once per token), or ``torch.compile(step)``.

    Compiled with dynamic shapes: the batch shrinks as sequences stop and the key/value
    cache grows, and a static-shape compile would compile again at each new shape.  The
    first call compiles (tens of seconds); later ones fuse the step's small kernels, which
    pays where launching them costs more than running them (GPUs at small batch).  On the
    CPU of docs/scaling.md it was slower than eager at the paper GPT's size.  The fused
    kernels round differently, so a seed gives the same draws as eager only up to that.
    """
    if not compile:
        return step
    if step not in _COMPILED_FOR_DECODING:
        _COMPILED_FOR_DECODING[step] = torch.compile(step, dynamic=True)
    return _COMPILED_FOR_DECODING[step]
