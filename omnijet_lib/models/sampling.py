"""Drawing from a model's output: one class per row of logits, by inverse transform.

Below the models and generation both: :mod:`omnijet_lib.generation` draws tokens
with it, and the direct-token shower model its voxels.  Inverse-transform
sampling -- one uniform number per row, a cumulative sum and a binary search --
instead of ``torch.multinomial``, which dominates a generation step at a
vocabulary of 65 538.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


# Columns of the output layer computed at a time by sample_from_head: a (batch x 2048) block of
# logits stays in the processor's caches while it is reduced, and a matrix product of that width
# ran ~2x faster here than one over all 65 538 tokens (benchmarks/generation.py).
HEAD_CHUNK = 2048


def sample_from_head(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    *,
    n_classes: int | None = None,
    banned: tuple[int, ...] = (),
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    chunk: int = HEAD_CHUNK,
) -> Tensor:
    """One class per row of ``hidden`` (B, D), from softmax of the output layer ``hidden @ weight.T + bias``.

    The same distribution as ``sample_categorical(F.linear(hidden, weight, bias))`` restricted to
    the first ``n_classes`` classes (default: all) without ``banned``, computed without ever
    holding or normalising the whole (B, V) softmax at once: the logits are made ``chunk``
    classes at a time, and each chunk's log-sum-exp is taken while it is in the caches.  One
    uniform number per row then picks a chunk in proportion to its share and a class inside
    it by inverse transform: only the chosen chunk is read a second time.  The
    logits are float32 whatever ``weight``'s dtype (a bfloat16 layer runs its product in
    bfloat16).
    """
    if temperature <= 0:
        msg = f"temperature must be > 0, got {temperature}"
        raise ValueError(msg)
    n_classes = weight.shape[0] if n_classes is None else n_classes
    chunk = min(chunk, n_classes)
    rows, n_chunks, device = len(hidden), -(-n_classes // chunk), hidden.device
    hidden = hidden.to(weight.dtype)
    # The logits chunk by chunk, (n_chunks, B, chunk): each chunk one contiguous block, which a float32
    # product writes in place; the columns past n_classes in the last chunk are -inf.
    logits = torch.empty(n_chunks, rows, chunk, device=device, dtype=torch.float32)
    in_place = weight.dtype == torch.float32 and not torch.is_autocast_enabled(device.type)
    chunk_lse = torch.empty(rows, n_chunks, device=device, dtype=torch.float32)
    row_max = torch.empty(rows, n_chunks, device=device, dtype=torch.float32)
    for i in range(n_chunks):
        start, end = i * chunk, min((i + 1) * chunk, n_classes)
        part = None if bias is None else bias[start:end]
        block = logits[i]
        if in_place and end - start == chunk:
            if part is None:
                torch.mm(hidden, weight[start:end].T, out=block)
            else:
                torch.addmm(part, hidden, weight[start:end].T, out=block)
        else:
            block[:, : end - start] = F.linear(hidden, weight[start:end], part)
            block[:, end - start :] = -torch.inf
        if temperature != 1.0:
            block.div_(temperature)
        for c in banned:
            if start <= c < end:
                block[:, c - start] = -torch.inf
        # log-sum-exp in place (block becomes exp(logit - its row's max)): no temporary of the chunk's size
        high = block.amax(dim=1, keepdim=True).clamp_(min=torch.finfo(torch.float32).min)  # finite if all banned
        row_max[:, i] = high.squeeze(1)
        chunk_lse[:, i] = block.sub_(high).exp_().sum(dim=1).log_()
    chunk_lse += row_max
    top = chunk_lse.amax(dim=1, keepdim=True)  # (B, 1): every weight below is exp(logit - top) <= ~chunk
    cumulative = (chunk_lse - top).exp_().cumsum_(dim=1)  # (B, n_chunks)
    target = torch.rand(rows, 1, generator=generator, device=device) * cumulative[:, -1:]
    which = torch.searchsorted(cumulative, target, right=True).clamp_(max=n_chunks - 1)  # (B, 1)
    below = torch.where(which > 0, cumulative.gather(1, (which - 1).clamp(min=0)), 0.0)
    # Each row's chosen chunk, (B, chunk), held as exp(logit - the row's max there): rescaled to exp(logit - top).
    weights = logits[which.squeeze(1), torch.arange(rows, device=device)]
    weights *= (row_max.gather(1, which) - top).exp_()
    position = torch.searchsorted(weights.cumsum(dim=1), target - below, right=True)
    # Rounding can put the target past the chunk's last class of non-zero probability: that one is meant.
    last = (torch.arange(chunk, device=device) * (weights > 0)).amax(dim=1, keepdim=True)
    return (which * chunk + torch.minimum(position, last)).squeeze(1)
