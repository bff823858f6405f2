"""Loading a saved tokenizer of any kind: the file names its kind, and the kind its class."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from omnijet_lib.tokenizers.base import FILE_FORMAT, Tokenizer
from omnijet_lib.tokenizers.binned import BinnedTokenizer
from omnijet_lib.tokenizers.vqvae import VQVAETokenizer

KINDS = (BinnedTokenizer, VQVAETokenizer)  # every tokenizer a file may hold


def load_tokenizer(path: str | os.PathLike, *, device: str = "auto") -> Tokenizer:
    """Load any saved tokenizer; its kind, config and constants come from the file."""
    kinds = {cls.kind: cls for cls in KINDS}
    path = Path(path)
    if not path.exists():
        msg = f"tokenizer file not found: {path}"
        raise FileNotFoundError(msg)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        msg = f"not a tokenizer file (torch.load failed): {path}: {err}"
        raise ValueError(msg) from err
    if not isinstance(state, dict) or state.get("format") != FILE_FORMAT:
        msg = f"not an omnijet tokenizer file (no format {FILE_FORMAT!r}): {path}"
        raise ValueError(msg)
    if state["kind"] not in kinds:
        msg = f"unknown tokenizer kind {state['kind']!r} in {path}; known: {sorted(kinds)}"
        raise ValueError(msg)
    tokenizer = kinds[state["kind"]].from_state(state)
    tokenizer.source_file = str(path)
    if hasattr(tokenizer, "to"):
        tokenizer.to(device)
    return tokenizer
