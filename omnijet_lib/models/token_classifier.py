"""Jet tagging on tokens: the GPT backbone with a classification head (paper sec. II.3, III.3, A.4).

The backbone is the generative model's (:class:`~omnijet_lib.models.gpt.Backbone`):
the same module, so its weights load from a generative checkpoint unchanged.
Heads read the hidden states of the constituent positions only -- not START,
STOP or padding:

- :class:`SumHead`, the paper's: Linear -> ReLU -> sum over constituents -> Linear;
- :class:`ClassAttentionHead`, an option: a learned class token attends to the
  constituents (as in ParT's class-attention blocks), then an MLP.

Sequences are right-padded and the backbone causal, so padding can change
neither the hidden state of a constituent nor, masked out of the head, the
prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from omnijet_lib.models.gpt import Backbone, GPTConfig, with_condition_tokens
from omnijet_lib.tokenizers.tokens import PAD, START

HEADS = ("sum", "class_attention")


def constituent_mask(sequences: Tensor, config: GPTConfig) -> Tensor:
    """True where a sequence holds a constituent's code token (not START, STOP or PAD)."""
    return (sequences > START) & (sequences < config.stop_token)


class SumHead(nn.Module):
    """Linear(d, d) -> ReLU -> masked sum over constituents -> Linear(d, n_classes)."""

    def __init__(self, embed_dim: int, n_classes: int):
        super().__init__()
        self.per_constituent = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU())
        self.out = nn.Linear(embed_dim, n_classes)

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        summed = (self.per_constituent(hidden) * mask[..., None]).sum(dim=1)  # (B, d)
        return self.out(summed)


class ClassAttentionHead(nn.Module):
    """A class token attends to the constituents; LayerNorm, MLP, Linear to the classes."""

    def __init__(self, embed_dim: int, n_classes: int, n_heads: int):
        super().__init__()
        self.class_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        nn.init.trunc_normal_(self.class_token, std=0.02)
        self.attention = nn.MultiheadAttention(embed_dim, n_heads, batch_first=True)
        self.norm = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, n_classes))

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        query = self.class_token.expand(len(hidden), -1, -1)
        attended, _ = self.attention(query, hidden, hidden, key_padding_mask=~mask, need_weights=False)
        return self.mlp(self.norm(attended[:, 0] + query[:, 0]))


@dataclass(frozen=True)
class TokenClassifierConfig:
    gpt: GPTConfig = GPTConfig()  # the backbone: a generative model's config, max_length aside (gpt.check_compatible)
    head: str = "sum"  # "sum" (paper) or "class_attention"
    n_classes: int = 2

    def __post_init__(self):
        if isinstance(self.gpt, dict):  # rebuilt from a checkpoint's description
            object.__setattr__(self, "gpt", GPTConfig(**self.gpt))
        if self.head not in HEADS:
            msg = f"unknown head {self.head!r}; choose from {', '.join(HEADS)}"
            raise ValueError(msg)


class TokenClassifier(nn.Module):
    """Token sequences ``(B, T)`` (START .. STOP, PAD) -> class logits ``(B, n_classes)``."""

    def __init__(self, config: TokenClassifierConfig = TokenClassifierConfig()):
        super().__init__()
        self.config = config
        gpt = config.gpt
        self.backbone = Backbone(gpt)
        if config.head == "sum":
            self.head = SumHead(gpt.embed_dim, config.n_classes)
        else:
            self.head = ClassAttentionHead(gpt.embed_dim, config.n_classes, gpt.n_heads)

    def forward(self, sequences: Tensor, jet_pt: Tensor | None = None) -> Tensor:
        # A backbone pre-trained with condition tokens reads them here too (M(n), P(b) are not constituents);
        # one conditioned on the jet pT needs it, ``jet_pt`` [GeV] per sequence.
        sequences = with_condition_tokens(sequences, self.config.gpt, jet_pt)
        mask = constituent_mask(sequences, self.config.gpt)
        if not mask.any(dim=1).all():
            msg = "every sequence needs at least one constituent token to be classified"
            raise ValueError(msg)
        longest = int((sequences != PAD).sum(dim=1).max())  # the columns after it are padding everywhere
        sequences, mask = sequences[:, :longest], mask[:, :longest]
        return self.head(self.backbone(sequences), mask)
