"""Timing generation fairly: device synchronisation, best-of timing, and the reference method.

The reference method is how the published OmniJet-α code generates: at every
step the whole sequence so far goes through the model again, the output layer
runs on every position, and the next token is drawn with ``torch.multinomial``.
For a 1700-token shower that takes minutes here, so :func:`reference_integrated`
times single steps at a few lengths and integrates over all steps.  Both the
benchmark (``benchmarks/generation.py``) and the shower notebooks use it, so the
number quoted next to our generator is measured the same way everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from omnijet_lib.models.gpt import GPT
from omnijet_lib.tokenizers.tokens import START


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def best_of(fn: Callable[[], object], repeats: int, device: torch.device, warm_up: Callable | None = None) -> float:
    """Shortest wall time (s) of ``repeats`` runs after a warm-up run (``fn`` itself unless given)."""
    (warm_up or fn)()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def reference_step(model: GPT, tokens: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One step of the reference method: the whole sequence again, the head on every position."""
    logits = model(tokens)[:, -1]  # (B, V); model(...) is (B, T, V)
    following = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)  # (B, 1)
    return torch.cat([tokens, following], dim=1)


def reference_whole(model: GPT, batch: int, n_tokens: int, generator: torch.Generator) -> torch.Tensor:
    device = next(model.parameters()).device
    tokens = torch.full((batch, 1), START, dtype=torch.long, device=device)
    for _ in range(n_tokens):
        tokens = reference_step(model, tokens, generator)
    return tokens


def reference_points(n_tokens: int, count: int) -> np.ndarray:
    """About ``count`` step lengths over 1..n_tokens: half evenly spaced, half geometric (fine at short lengths)."""
    linear = np.linspace(1, n_tokens, max(2, count - count // 2))
    geometric = np.geomspace(1, n_tokens, max(2, count // 2 + 1))
    return np.unique(np.round(np.concatenate([linear, geometric])).astype(int))


def reference_integrated(
    model: GPT, batch: int, n_tokens: int, count: int, repeats: int, generator: torch.Generator
) -> tuple[float, np.ndarray, np.ndarray]:
    """Seconds per batch of ``n_tokens`` steps, from single steps timed at a few lengths (trapezoid)."""
    device = next(model.parameters()).device
    codes = torch.randint(1, model.config.codebook_size + 1, (batch, n_tokens), generator=generator, device=device)
    lengths = reference_points(n_tokens, count)
    seconds = np.array(
        [best_of(lambda t=t: reference_step(model, codes[:, :t], generator), repeats, device) for t in lengths]
    )
    every_step = np.interp(np.arange(1, n_tokens + 1), lengths, seconds)  # step t runs t positions
    return float(every_step.sum()), lengths, seconds
