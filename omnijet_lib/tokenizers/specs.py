"""Tokenizers named by short specs, so a notebook parameter can choose them.

``"binned-21"``          21 bins per feature (21^3 = 9261 tokens)
``"unconditional-8192"`` MLP VQ-VAE with 8192 codes
``"conditional-8192"``   NormFormer VQ-VAE with 8192 codes (the paper's tokenizer)
"""

from __future__ import annotations

from dataclasses import replace

from omnijet_lib.data.preprocessing import PreprocessingConfig
from omnijet_lib.tokenizers.base import Tokenizer
from omnijet_lib.tokenizers.binned import BinnedConfig, BinnedTokenizer
from omnijet_lib.tokenizers.quantizer import QuantizerConfig
from omnijet_lib.tokenizers.vqvae import VQVAEConfig, VQVAETokenizer

KINDS = ("binned", "unconditional", "conditional")


def parse_spec(spec: str) -> tuple[str, int]:
    """``"conditional-8192"`` -> ("conditional", 8192), with a clear error for anything else."""
    kind, _, size = str(spec).partition("-")
    if kind not in KINDS or not size.isdigit() or int(size) < 1:
        msg = f"tokenizer spec {spec!r} not understood; use '<kind>-<size>' with kind one of {KINDS}, e.g. 'conditional-8192' or 'binned-21'"
        raise ValueError(msg)
    return kind, int(size)


def build_tokenizer(
    spec: str,
    *,
    preprocessing: PreprocessingConfig = PreprocessingConfig(),
    vqvae: VQVAEConfig = VQVAEConfig(),
    device: str = "auto",
    seed: int | None = None,
) -> Tokenizer:
    """An untrained tokenizer for ``spec``; ``vqvae`` supplies the remaining VQ-VAE settings.

    ``seed`` sets a VQ-VAE's initial weights (None: torch's global RNG as it stands, so
    they depend on what drew from it before).

    ``preprocessing`` says what is tokenized: jets (the default) or, with a
    ``ShowerPreprocessingConfig``, calorimeter hits; the VQ-VAE's number of input
    features follows from it.  The binned tokenizer is for jets only.
    """
    kind, size = parse_spec(spec)
    if kind == "binned":
        if not isinstance(preprocessing, PreprocessingConfig):
            msg = f"the binned tokenizer bins the 3 jet features only; use a VQ-VAE spec for {type(preprocessing).__name__}"
            raise ValueError(msg)
        return BinnedTokenizer(BinnedConfig(bins=(size, size, size)), preprocessing)
    quantizer: QuantizerConfig = replace(vqvae.quantizer, codebook_size=size)
    config = replace(vqvae, conditional=kind == "conditional", quantizer=quantizer, n_features=preprocessing.n_features)
    return VQVAETokenizer(config, preprocessing, device=device, seed=seed)
