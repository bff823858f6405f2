"""Drawing from a model's output: one class per row of logits, by inverse transform.

Below the models and generation both: :mod:`omnijet_lib.generation` draws tokens
with it, and the direct-token shower model its voxels.  Inverse-transform
sampling -- one uniform number per row, a cumulative sum and a binary search --
instead of ``torch.multinomial``, which dominates a generation step at a
vocabulary of 65 538.
"""

from __future__ import annotations

import torch
from torch import Tensor

from omnijet_lib.tokenizers.tokens import START


def sample_tokens(
    logits: Tensor, *, temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """One token per row of ``logits`` ``(B, V)``, drawn from softmax(logits / temperature).

    ``top_k`` keeps only the k most likely tokens.  START (index 0) is never drawn.
    Inverse-transform sampling: the first token whose cumulative probability
    exceeds u * total, with u uniform in [0, 1); a token of probability 0 is
    never chosen.
    """
    logits = logits.float().clone()  # never edit the caller's
    logits[:, START] = -torch.inf
    return sample_categorical(logits, temperature=temperature, top_k=top_k, generator=generator)


def sample_categorical(
    logits: Tensor, *, temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """One class per row of ``logits`` ``(B, C)`` from softmax(logits / temperature), by inverse transform."""
    if temperature <= 0:
        msg = f"temperature must be > 0, got {temperature}"
        raise ValueError(msg)
    logits = logits.float() if temperature == 1.0 else logits.float() / temperature
    candidates = None
    if top_k is not None:
        if not 1 <= top_k < logits.shape[-1]:
            msg = f"top_k must be in 1..{logits.shape[-1] - 1} (or None for the full vocabulary), got {top_k}"
            raise ValueError(msg)
        logits, candidates = logits.topk(top_k, dim=-1)
    cumulative = logits.softmax(dim=-1).cumsum_(dim=-1)
    u = torch.rand(len(logits), 1, generator=generator, device=logits.device, dtype=cumulative.dtype)
    choice = torch.searchsorted(cumulative, u * cumulative[:, -1:], right=True)
    # Searching u * total, not u, keeps the draw exact when rounding makes the total differ from 1;
    # u * total can round up to total itself, and the last token is then meant.
    choice = choice.clamp_(max=logits.shape[-1] - 1).squeeze(1)
    return choice if candidates is None else candidates.gather(1, choice[:, None]).squeeze(1)
