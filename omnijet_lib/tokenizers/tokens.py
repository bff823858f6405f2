"""Token conventions shared by every tokenizer and the GPT (docs/jets.md).

A tokenizer with ``K`` codes speaks a vocabulary of ``K + 2`` tokens::

    0            START   begins every sequence; never sampled
    1 .. K       code k - 1 of the codebook (one constituent each)
    K + 1        STOP    ends a sequence

Padded positions hold ``PAD = -1``: outside the vocabulary, so a padding value
can never be mistaken for a token, and the GPT masks it out explicitly.
"""

from __future__ import annotations

import numpy as np

START = 0
PAD = -1


def stop_token(codebook_size: int) -> int:
    """The token that ends a sequence: ``K + 1``."""
    return codebook_size + 1


def vocabulary_size(codebook_size: int) -> int:
    """Codes plus START and STOP."""
    return codebook_size + 2


def codes_to_tokens(codes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Codebook indices (0 .. K-1) -> tokens (1 .. K); ``PAD`` where ``mask`` is False."""
    return np.where(mask, np.asarray(codes, dtype=np.int64) + 1, PAD)


def tokens_to_codes(tokens: np.ndarray, mask: np.ndarray, codebook_size: int) -> np.ndarray:
    """Tokens (1 .. K) -> codebook indices; checks that every real position holds a code token."""
    tokens, mask = np.asarray(tokens, dtype=np.int64), np.asarray(mask, dtype=bool)
    if tokens.shape != mask.shape:
        msg = f"tokens {tokens.shape} and mask {mask.shape} differ in shape"
        raise ValueError(msg)
    real = tokens[mask]
    if real.size and (real.min() < 1 or real.max() > codebook_size):
        msg = f"tokens must lie in 1..{codebook_size} (codes) where mask is True; found {real.min()}..{real.max()}"
        raise ValueError(msg)
    return np.where(mask, tokens - 1, 0)


def to_sequences(tokens: np.ndarray, mask: np.ndarray, codebook_size: int) -> np.ndarray:
    """Per-jet token rows -> GPT sequences ``START t1 .. tn STOP PAD ..`` of length ``L + 2``."""
    tokens_to_codes(tokens, mask, codebook_size)  # validates
    n, length = mask.shape
    counts = mask.sum(axis=1)
    sequences = np.full((n, length + 2), PAD, dtype=np.int64)
    sequences[:, 0] = START
    sequences[:, 1 : length + 1] = np.where(mask, tokens, PAD)
    sequences[np.arange(n), counts + 1] = stop_token(codebook_size)
    return sequences


def from_sequences(sequences: np.ndarray, codebook_size: int, *, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """GPT sequences -> (tokens (N, max_length), mask).

    The sequence ends at its first STOP or PAD (a generated sequence that ran to
    the length limit has none).  A START after position 0 or a token outside the
    vocabulary is an error, not something to skip silently.
    """
    sequences = np.asarray(sequences, dtype=np.int64)
    if sequences.ndim != 2 or sequences.shape[1] < 1 or np.any(sequences[:, 0] != START):
        msg = "sequences must be (N, T) arrays that begin with the START token 0"
        raise ValueError(msg)
    body = sequences[:, 1:]
    ended = (body == stop_token(codebook_size)) | (body == PAD)
    counts = np.where(ended.any(axis=1), ended.argmax(axis=1), body.shape[1])
    if counts.max(initial=0) > max_length:
        msg = f"a sequence holds {counts.max()} tokens before its end, more than max_length={max_length}"
        raise ValueError(msg)
    width = min(body.shape[1], max_length)
    mask = np.arange(max_length)[None, :] < counts[:, None]
    tokens = np.full((len(body), max_length), PAD, dtype=np.int64)
    tokens[:, :width] = body[:, :width]
    tokens[~mask] = PAD
    tokens_to_codes(tokens, mask, codebook_size)  # a START or out-of-range token inside raises
    return tokens, mask
