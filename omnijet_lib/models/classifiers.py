"""Jet classifiers on padded constituents: DeepSets and a small transformer.

Both read ``x (B, N, F)`` — the scaled pre-processed features of
:mod:`omnijet_lib.data.preprocessing` — with ``mask (B, N)`` (True = a real
constituent) and return logits ``(B, n_classes)``.  They serve the token-quality
classifier test (paper appendix A.2) and the generated-vs-real test (A.5).

Padding never changes the output: padded inputs are zeroed before anything
reads them (so even NaN there is harmless), attention never looks at them and
pooling skips them.  Neither model has a positional encoding: constituents are
a set, so the output does not depend on their order either.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnijet_lib.networks import mlp


def check_inputs(x: Tensor, mask: Tensor, n_features: int) -> None:
    """Refuse inputs whose shapes do not fit ``x (B, N, n_features)``, ``mask (B, N)``."""
    if x.ndim != 3 or x.shape[-1] != n_features or mask.shape != x.shape[:2]:
        msg = f"expected x (B, N, {n_features}) and mask (B, N); got x {tuple(x.shape)} and mask {tuple(mask.shape)}"
        raise ValueError(msg)
    if mask.dtype != torch.bool:
        msg = f"mask must be bool (True = real constituent); got {mask.dtype}"
        raise ValueError(msg)


def zero_padding(x: Tensor, mask: Tensor) -> Tensor:
    """Set padded constituents to 0 so that whatever was stored there cannot leak."""
    return x.masked_fill(~mask[..., None], 0.0)  # (B, N, F)


# --- DeepSets ---------------------------------------------------------------


@dataclass(frozen=True)
class DeepSetsConfig:
    n_features: int = 3  # per-constituent inputs: log_pt, eta_rel, phi_rel (scaled)
    particle_layers: tuple[int, ...] = (100, 100, 256)  # per-particle MLP (paper A.2; A.5 uses (10, 10, 10))
    jet_layers: tuple[int, ...] = (100, 100, 100)  # MLP on the summed particle representation (paper A.2)
    n_classes: int = 2  # logits out; 10 for all JetClass types


class DeepSets(nn.Module):
    """phi per particle -> sum over real particles -> F on the jet (Zaheer et al.; Komiske et al.'s EFN without pT weights)."""

    def __init__(self, config: DeepSetsConfig = DeepSetsConfig()):
        super().__init__()
        self.config = config
        self.particle = mlp((config.n_features, *config.particle_layers), activate_last=True)
        self.jet = mlp((config.particle_layers[-1], *config.jet_layers), activate_last=True)
        self.head = nn.Linear(config.jet_layers[-1], config.n_classes)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        check_inputs(x, mask, self.config.n_features)
        h = self.particle(zero_padding(x, mask))  # (B, N, P)
        # A padded particle still passes through the MLP (0 -> biases), so mask after it too.
        h = h.masked_fill(~mask[..., None], 0.0).sum(dim=1)  # (B, P)
        return self.head(self.jet(h))  # (B, n_classes)


# --- Transformer --------------------------------------------------------------


class SelfAttention(nn.Module):
    """Multi-head self-attention in which no constituent attends to padding."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)  # queries, keys, values of all heads in one matmul
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)  # 3 x (B, N, C)
        q, k, v = (t.view(B, N, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, H, N, C/H)
        # A jet without constituents would have nothing to attend to (softmax of all -inf = NaN);
        # let its (zeroed, later ignored) slots see each other instead.
        attend = mask | ~mask.any(dim=1, keepdim=True)  # (B, N)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attend[:, None, None, :])  # (B, H, N, C/H)
        return self.proj(y.transpose(1, 2).reshape(B, N, C))  # (B, N, C)


class Block(nn.Module):
    """Pre-LN transformer encoder block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x), mask)  # (B, N, C)
        return x + self.mlp(self.ln_2(x))  # (B, N, C)


@dataclass(frozen=True)
class TransformerClassifierConfig:
    n_features: int = 3  # per-constituent inputs: log_pt, eta_rel, phi_rel (scaled)
    dim: int = 64  # width of the constituent embedding; small enough for CPU training
    heads: int = 4  # attention heads; must divide dim
    blocks: int = 2  # pre-LN encoder blocks (the paper's classifier has 5 NormFormer + 2 class-attention)
    n_classes: int = 2  # logits out; 10 for all JetClass types

    def __post_init__(self):
        if self.dim % self.heads:
            msg = f"dim ({self.dim}) must be a multiple of heads ({self.heads})"
            raise ValueError(msg)


class TransformerClassifier(nn.Module):
    """Embed each constituent, let constituents attend to each other, mean-pool the real ones, classify."""

    def __init__(self, config: TransformerClassifierConfig = TransformerClassifierConfig()):
        super().__init__()
        self.config = config
        self.embed = nn.Linear(config.n_features, config.dim)
        self.blocks = nn.ModuleList(Block(config.dim, config.heads) for _ in range(config.blocks))
        self.ln_f = nn.LayerNorm(config.dim)  # pre-LN blocks leave the residual stream un-normalised
        self.head = nn.Linear(config.dim, config.n_classes)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        check_inputs(x, mask, self.config.n_features)
        h = self.embed(zero_padding(x, mask))  # (B, N, C); no positional encoding: a jet is a set
        for block in self.blocks:
            h = block(h, mask)  # (B, N, C)
        weights = mask[..., None].to(h.dtype)  # (B, N, 1)
        # A jet without constituents pools to 0 rather than 0/0.
        pooled = (h * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (B, C)
        return self.head(self.ln_f(pooled))  # (B, n_classes)
