"""Tokenizers: constituents <-> integer tokens (binned grid, unconditional and conditional VQ-VAE).

``tokens`` holds the vocabulary conventions, ``quantizer`` the vector quantizer
and its chunked nearest-code search, ``base`` the common interface and the
one-file save format, ``binned`` and ``vqvae`` the tokenizers themselves,
``registry`` loads a saved one of any kind, ``specs`` builds one from a short
name (``"conditional-512"``), ``token_files`` tokenizes a jet or shower file once
and ``token_dataset`` reads token files (several shards as one) row by row.
Training a VQ-VAE is :func:`omnijet_lib.training.tokenizers.fit_tokenizer`'s.
"""

from omnijet_lib.tokenizers.base import Tokenizer
from omnijet_lib.tokenizers.binned import BinnedConfig, BinnedTokenizer
from omnijet_lib.tokenizers.quantizer import QuantizerConfig
from omnijet_lib.tokenizers.registry import load_tokenizer
from omnijet_lib.tokenizers.tokens import PAD, START, stop_token, vocabulary_size
from omnijet_lib.tokenizers.vqvae import VQVAEConfig, VQVAETokenizer

__all__ = [
    "PAD",
    "START",
    "BinnedConfig",
    "BinnedTokenizer",
    "QuantizerConfig",
    "Tokenizer",
    "VQVAEConfig",
    "VQVAETokenizer",
    "load_tokenizer",
    "stop_token",
    "vocabulary_size",
]
