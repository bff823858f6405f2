"""The GPT backbone of OmniJet-alpha, its heads, and a key/value cache for generation.

Paper (arXiv:2403.05618, sec. II.3 and A.3): token embedding of width 256, three
blocks of 8-head causal self-attention, a feed-forward network of width 1024 with
ReLU, no dropout and *no positional encoding* -- the constituents of a jet are a
set; the causal order alone tells a token where it stands.  The block is the
paper's post-norm layout::

    x = LN(x + MHA(x))
    x = LN(x + Linear(ReLU(Linear(x))))

:class:`Backbone` maps tokens to hidden states; heads are separate modules that
read them: :class:`GenerativeHead` here (next-token logits), the classification
head of the transfer-learning study elsewhere.  :class:`GPT` is backbone plus
generative head.

Padding.  Sequences are right-padded (``START t1 .. tn STOP PAD ..``), so under
the causal mask a real token only ever attends to real tokens before it:
padding cannot reach a real position's output, and :func:`next_token_loss`
leaves padded targets out of the loss.  Padded inputs are embedded as START
(any valid index would do) only so that the embedding lookup is defined.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from omnijet_lib.checkpoints import load_checkpoint
from omnijet_lib.devices import pick_device
from omnijet_lib.tokenizers.tokens import PAD, START


@dataclass(frozen=True)
class GPTConfig:
    codebook_size: int = 8192  # K code tokens; the vocabulary adds START (0) and STOP (K + 1)
    embed_dim: int = 256  # width of the token embedding and of every block
    n_heads: int = 8
    n_blocks: int = 3
    ffn_dim: int = 1024  # hidden width of the feed-forward network
    max_length: int = 130  # longest sequence, START and STOP included (128 constituents)
    # False: the paper's GPT, which ends a jet by drawing STOP.  True: a jet's multiplicity is its first
    # token (START M(n) t1 .. tn STOP), so generation draws n first and then exactly n constituents, each
    # conditioned on n -- see with_condition_tokens for why.
    multiplicity_token: bool = False
    # Jet pT bin edges [GeV], increasing.  Empty: the paper's GPT.  Else a jet's pT bin b (0 .. len(edges),
    # under- and overflow included) is a token P(b) after START (and M(n)), so the constituents are drawn
    # knowing the pT they must add up to -- see with_condition_tokens.
    jet_pt_edges: tuple[float, ...] = ()
    # With multiplicity_token: every position also embeds how many constituents are still to come, n - i,
    # so the model need not count its own tokens through attention -- see constituents_to_come.
    count_down: bool = False

    def __post_init__(self):
        if self.embed_dim % self.n_heads:
            msg = f"embed_dim={self.embed_dim} must be divisible by n_heads={self.n_heads}"
            raise ValueError(msg)
        for name in ("codebook_size", "embed_dim", "n_heads", "n_blocks", "ffn_dim", "max_length"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                msg = f"GPTConfig.{name} must be an integer >= 1, got {value!r}"
                raise ValueError(msg)
        if not isinstance(self.multiplicity_token, bool):
            msg = f"GPTConfig.multiplicity_token must be True or False, got {self.multiplicity_token!r}"
            raise ValueError(msg)  # noqa: TRY004 -- a bad config value, as for every other field
        if self.count_down is not False and (self.count_down is not True or not self.multiplicity_token):
            msg = f"GPTConfig.count_down must be True or False, and True needs multiplicity_token; got {self.count_down!r}"
            raise ValueError(msg)
        try:  # a list (from JSON) or an array becomes a tuple of floats, so the config stays hashable
            edges = tuple(float(edge) for edge in self.jet_pt_edges)
        except (TypeError, ValueError):
            msg = f"GPTConfig.jet_pt_edges must be a sequence of numbers, got {self.jet_pt_edges!r}"
            raise ValueError(msg) from None
        if not (np.isfinite(edges).all() and all(a < b for a, b in pairwise(edges))):
            msg = f"GPTConfig.jet_pt_edges must be finite and strictly increasing, got {edges}"
            raise ValueError(msg)
        object.__setattr__(self, "jet_pt_edges", edges)

    @property
    def n_jet_pt_bins(self) -> int:
        """Jet pT bins, under- and overflow included; 0 without jet pT tokens."""
        return len(self.jet_pt_edges) + 1 if self.jet_pt_edges else 0

    @property
    def vocab_size(self) -> int:
        """START, the codes, STOP, then a token per multiplicity 0 .. max_length - 2 and per jet pT bin if asked for."""
        return self.first_jet_pt_token + self.n_jet_pt_bins

    @property
    def stop_token(self) -> int:
        return self.codebook_size + 1

    @property
    def first_multiplicity_token(self) -> int:
        """M(n) = this + n: the token that says "n constituents follow"."""
        return self.codebook_size + 2

    @property
    def first_jet_pt_token(self) -> int:
        """P(b) = this + b: the token that says "the jet's pT lies in bin b"."""
        return self.first_multiplicity_token + (self.max_length - 1 if self.multiplicity_token else 0)

    @property
    def n_condition_tokens(self) -> int:
        """Tokens between START and the first constituent: M(n) and P(b), as configured."""
        return int(self.multiplicity_token) + int(bool(self.jet_pt_edges))

    @property
    def positions(self) -> int:
        """Positions the model sees of the longest sequence: max_length plus the condition tokens."""
        return self.max_length + self.n_condition_tokens

    def jet_pt_bin(self, jet_pt: Tensor) -> Tensor:
        """The pT bin (0 .. len(jet_pt_edges)) of each jet pT [GeV]."""
        edges = torch.tensor(self.jet_pt_edges, dtype=jet_pt.dtype, device=jet_pt.device)
        return torch.bucketize(jet_pt, edges, right=True)


class KVCache:
    """Keys and values of every block for the positions generated so far.

    Each block's keys (and values) are one contiguous ``(B, H, capacity, D/H)`` tensor
    that grows by ``GROWTH`` positions when full, up to ``max_length``.  A step writes
    in place rather than concatenating (which would copy the whole cache every token),
    and attends over the whole storage, the unfilled tail masked: a batched
    matrix-vector product over a contiguous tensor runs several times faster on a CPU
    than over the strided view of the filled part (benchmarks/generation.py), which
    outweighs the < ``GROWTH`` extra positions and the copy at each growth.  Unfilled
    positions hold zeros, never uninitialised memory (a NaN there would survive its
    zero weight).  ``keep(rows)`` drops finished sequences: the rows are compacted, so
    later steps no longer compute them.
    """

    GROWTH = 32

    def __init__(
        self, config: GPTConfig, batch_size: int, *, device, dtype=torch.float32, max_length: int | None = None
    ):
        self.max_length = config.positions if max_length is None else max_length
        empty = (batch_size, config.n_heads, 0, config.embed_dim // config.n_heads)  # grown at the first update
        self.keys = [torch.zeros(empty, device=device, dtype=dtype) for _ in range(config.n_blocks)]
        self.values = [torch.zeros(empty, device=device, dtype=dtype) for _ in range(config.n_blocks)]
        self.length = 0  # positions filled

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def update(self, block: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, int]:
        """Store one block's keys and values ``(B, H, T, D/H)`` of the new positions.

        Returns the block's whole storage ``(B, H, capacity, D/H)`` and the number of its
        positions filled; past those it holds zeros, to be masked by the caller.
        """
        end = self.length + k.shape[2]
        if end > self.max_length:
            msg = f"sequence longer than the cache (max_length={self.max_length})"
            raise ValueError(msg)
        if end > self.keys[block].shape[2]:
            capacity = min(self.max_length, -(-end // self.GROWTH) * self.GROWTH)
            self.keys[block] = _grown(self.keys[block], capacity)
            self.values[block] = _grown(self.values[block], capacity)
        self.keys[block][:, :, self.length : end] = k
        self.values[block][:, :, self.length : end] = v
        return self.keys[block], self.values[block], end

    def advance(self, n: int) -> None:
        """Called once all blocks have stored ``n`` new positions."""
        self.length += n

    def keep(self, rows: Tensor) -> None:
        """Keep only the sequences ``rows`` (indices into the current batch)."""
        self.keys = [k[rows] for k in self.keys]
        self.values = [v[rows] for v in self.values]


def _grown(storage: Tensor, capacity: int) -> Tensor:
    """``storage`` (B, H, L, d) copied into zeros of length ``capacity`` (one block at a time: peak memory low)."""
    grown = storage.new_empty(storage.shape[:2] + (capacity,) + storage.shape[3:])
    grown[:, :, : storage.shape[2]] = storage  # every new page is written once: copied or zeroed
    grown[:, :, storage.shape[2] :] = 0
    return grown


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, block_index: int):
        super().__init__()
        self.n_heads = config.n_heads
        self.block_index = block_index  # which slot of a KVCache is ours
        self.scale = (config.embed_dim // config.n_heads) ** -0.5
        self.qkv = nn.Linear(config.embed_dim, 3 * config.embed_dim)
        self.out = nn.Linear(config.embed_dim, config.embed_dim)

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        batch, length, width = x.shape
        q, k, v = (
            t.view(batch, length, self.n_heads, width // self.n_heads).transpose(1, 2)
            for t in self.qkv(x).split(width, dim=2)
        )  # (B, H, T, d) each
        if cache is None or cache.length == 0:
            # Training, or the first step of generation: attend causally within x.
            if cache is not None:
                cache.update(self.block_index, k, v)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            # One new position per step: it may attend to everything cached, so no mask but the unfilled tail.
            if length != 1:
                msg = "with a filled cache the model takes one new token per sequence at a time"
                raise ValueError(msg)
            k, v, filled = cache.update(self.block_index, k, v)
            # Plain matmuls: for a single query, scaled_dot_product_attention's CPU kernel
            # was several times slower here (benchmarks/generation.py).
            weights = (q @ k.transpose(-2, -1)) * self.scale  # (B, H, 1, capacity)
            weights[..., filled:] = -torch.inf
            y = weights.softmax(dim=-1).to(v.dtype) @ v
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    """Post-norm transformer block of the paper: residual, then LayerNorm."""

    def __init__(self, config: GPTConfig, block_index: int):
        super().__init__()
        self.attention = CausalSelfAttention(config, block_index)
        self.norm_attention = nn.LayerNorm(config.embed_dim)
        self.ffn = nn.Sequential(
            nn.Linear(config.embed_dim, config.ffn_dim), nn.ReLU(), nn.Linear(config.ffn_dim, config.embed_dim)
        )
        self.norm_ffn = nn.LayerNorm(config.embed_dim)

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        x = self.norm_attention(x + self.attention(x, cache))
        return self.norm_ffn(x + self.ffn(x))


class Backbone(nn.Module):
    """Tokens ``(B, T)`` -> hidden states ``(B, T, embed_dim)``; PAD may appear after a sequence's end."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim)
        if config.count_down:  # index 0: START (n not yet known); 1 + n - i after it
            self.count_down = nn.Embedding(config.max_length, config.embed_dim)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_blocks))

    def forward(self, tokens: Tensor, cache: KVCache | None = None, to_come: Tensor | None = None) -> Tensor:
        """``to_come`` (same shape as ``tokens``): the count-down index of each position, for a model with
        ``count_down`` stepping with a filled cache; otherwise it is read off the tokens (:func:`constituents_to_come`)."""
        if tokens.ndim != 2:
            msg = f"tokens must be (batch, length), got shape {tuple(tokens.shape)}"
            raise ValueError(msg)
        x = self.embedding(tokens.masked_fill(tokens == PAD, START))
        if self.config.count_down:
            if to_come is None:
                if cache is not None and cache.length > 0:
                    msg = "a count-down model stepping with a filled cache needs to_come (the tokens no longer hold n)"
                    raise ValueError(msg)
                to_come = constituents_to_come(tokens, self.config)
            x = x + self.count_down(to_come)
        return run_blocks(self.blocks, x, cache, max_length=self.config.positions)


def constituents_to_come(sequences: Tensor, config: GPTConfig) -> Tensor:
    """The count-down index of every position of ``START M(n) [P(b)] t1 .. tn STOP`` sequences: 0 at START
    (n is not known yet), then 1 + the constituents still to come after the position's token.

    Why: a generated jet's n is drawn first, but a small GPT tracks badly how many of
    its n constituents it has placed -- its decoded pT falls too fast along the
    sequence and the last constituents pile up on the softest codes, the first
    thing a classifier of generated vs real jets finds.  Told at every position how
    many are still to come, it need not count.  (The direct-token shower model is
    told the fraction placed for the same reason.)
    """
    index = torch.zeros_like(sequences)
    if sequences.shape[1] > 1:
        n = (sequences[:, 1] - config.first_multiplicity_token).clamp(min=0)  # M(n) follows START
        placed = ((sequences > START) & (sequences < config.stop_token)).cumsum(dim=1)
        index[:, 1:] = (n[:, None] - placed[:, 1:] + 1).clamp(0, config.max_length - 1)
    return index


def with_condition_tokens(sequences: Tensor, config: GPTConfig, jet_pt: Tensor | None = None) -> Tensor:
    """``START t1 .. tn STOP PAD..`` -> ``START M(n) P(b) t1 .. tn STOP PAD..``, each as the config asks.

    Why the multiplicity: a GPT that ends a jet by drawing STOP sees, while
    generating, its own prefixes, which drift from real ones; on them it draws
    STOP too early, and its jets come out with too few constituents and too
    little mass (exposure bias, measured in notebook 04).  Drawing the
    multiplicity first -- from a distribution the model learns exactly, as it
    depends on nothing before it -- and then n constituents conditioned on it, as
    the point-cloud generators of the field do, takes the end of the jet out of
    the drifting part.

    Why the jet pT: a jet's pT is the sum of its constituents', but a GPT draws
    them one at a time with no notion of a total, so the generated jet-pT
    spectrum comes out smeared where the real one has the sharp edge of the
    selection (pT > 500 GeV).  Told the pT bin first (``jet_pt`` [GeV], one per
    sequence), it draws constituents that add up to it.

    The sequences of a token file stay as they are; the model inserts these
    tokens itself, in training, in generation and in the classifier on its
    backbone.  Without either option the sequences come back unchanged.
    """
    inserted = []
    if config.multiplicity_token:
        n = ((sequences > START) & (sequences < config.stop_token)).sum(dim=1)  # code tokens
        inserted.append(config.first_multiplicity_token + n)
    if config.jet_pt_edges:
        if jet_pt is None:
            msg = "this GPT is conditioned on the jet pT (GPTConfig.jet_pt_edges): give each sequence's jet_pt"
            raise ValueError(msg)
        inserted.append(config.first_jet_pt_token + config.jet_pt_bin(jet_pt.to(sequences.device)))
    if not inserted:
        return sequences
    return torch.cat([sequences[:, :1], torch.stack(inserted, dim=1), sequences[:, 1:]], dim=1)


def run_blocks(blocks: nn.ModuleList, x: Tensor, cache: KVCache | None, *, max_length: int) -> Tensor:
    """Input embeddings ``(B, T, D)`` through the causal blocks -> hidden states, filling ``cache`` if given.

    Shared by every model on this backbone, whatever its inputs (tokens here, hits
    embedded directly in :mod:`omnijet_lib.models.spatial_gpt`).
    """
    start = 0 if cache is None else cache.length
    if start + x.shape[1] > max_length:
        msg = f"sequence of {start + x.shape[1]} positions exceeds max_length={max_length}"
        raise ValueError(msg)
    for block in blocks:
        x = block(x, cache)
    if cache is not None:
        cache.advance(x.shape[1])
    return x


class GenerativeHead(nn.Module):
    """Hidden states ``(..., dim)`` -> logits over ``n_classes`` (``.linear``, as :func:`chunked_cross_entropy` reads it).

    The GPT's classes are its vocabulary (START, codes, STOP); the direct-token shower
    model's, its voxels (or a hit's layer, x or y) and STOP.
    """

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.linear(hidden)


class GPT(nn.Module):
    """Backbone + generative head: next-token logits ``(B, T, vocab_size)``."""

    def __init__(self, config: GPTConfig = GPTConfig()):
        super().__init__()
        self.config = config
        self.backbone = Backbone(config)
        self.head = GenerativeHead(config.embed_dim, config.vocab_size)

    def forward(self, tokens: Tensor, cache: KVCache | None = None) -> Tensor:
        return self.head(self.backbone(tokens, cache))

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# Logits are computed this many (position x vocabulary) elements at a time: 2^26 float32
# are 256 MB.  A jet batch (64 x 129 x 8194) fits in one chunk; a shower batch
# (72 x 1701 x 65 538 = 8e9 elements, 32 GB) would not fit in memory at once.
LOGITS_CHUNK_ELEMENTS = 2**26


def chunked_cross_entropy(
    head: nn.Module, hidden: Tensor, targets: Tensor, *, max_elements: int = LOGITS_CHUNK_ELEMENTS
) -> tuple[Tensor, int]:
    """Summed cross-entropy of ``head(hidden)`` against ``targets`` and the number of correct argmaxes.

    ``hidden`` is ``(n, embed_dim)``.  When the logits ``(n, vocab)`` exceed
    ``max_elements`` they are made chunk by chunk under activation checkpointing:
    backward recomputes each chunk's logits instead of keeping them, so memory
    holds one chunk, not all -- at the cost of running the output layer twice.
    """
    rows = max(1, max_elements // head.linear.out_features)
    if len(hidden) <= rows:
        return _cross_entropy_sum(head, hidden, targets)
    loss_sum, n_correct = hidden.new_zeros(()), 0
    for start in range(0, len(hidden), rows):
        chunk = slice(start, start + rows)
        if torch.is_grad_enabled():
            loss, correct = checkpoint(_cross_entropy_sum, head, hidden[chunk], targets[chunk], use_reentrant=False)
        else:  # validation: nothing to recompute for
            loss, correct = _cross_entropy_sum(head, hidden[chunk], targets[chunk])
        loss_sum, n_correct = loss_sum + loss, n_correct + correct
    return loss_sum, n_correct


def _cross_entropy_sum(head: nn.Module, hidden: Tensor, targets: Tensor) -> tuple[Tensor, int]:
    logits = head(hidden)
    correct = int((logits.detach().argmax(dim=-1) == targets).sum())
    return F.cross_entropy(logits, targets, reduction="sum"), correct


# ----------------------------------------------------------------------------- loading


class PretrainedGPT(NamedTuple):
    """What a GPT checkpoint holds: where it is, its config, its weights and the run's whole description."""

    path: Path
    config: GPTConfig
    weights: dict[str, Tensor]
    describe: dict  # the run's record: gpt_config, and e.g. the tokenizer and what it started from (fit_gpt)


def read_pretrained_gpt(path: str | os.PathLike) -> PretrainedGPT:
    """A checkpoint :func:`fit_gpt` wrote (``best.pt`` or ``last.pt``), read whole; refuses any other."""
    checkpoint = load_checkpoint(path)
    describe = checkpoint.get("describe") or {}
    if "gpt_config" not in describe:
        msg = f"{path} is not a GPT checkpoint (no 'gpt_config' in its description: {sorted(describe)})"
        raise ValueError(msg)
    return PretrainedGPT(Path(path), GPTConfig(**describe["gpt_config"]), checkpoint["model"], describe)


def read_gpt_checkpoint(path: str | os.PathLike) -> tuple[GPTConfig, dict]:
    """The GPTConfig and the model weights of a checkpoint :func:`fit_gpt` wrote; refuses any other."""
    pretrained = read_pretrained_gpt(path)
    return pretrained.config, pretrained.weights


# Why a GPTConfig field must be the checkpoint's for its weights to be taken over (max_length only sometimes).
MUST_AGREE = {
    "codebook_size": "the vocabulary: token k is the tokenizer's code k - 1, and the embedding and head have a row per token",
    "embed_dim": "the width of every weight",
    "n_heads": "how the attention weights are split into heads",
    "n_blocks": "the number of blocks",
    "ffn_dim": "the width of the feed-forward networks",
    "multiplicity_token": "whether M(n) tokens follow START (and the vocabulary holds them)",
    "count_down": "whether every position embeds the constituents still to come",
    "jet_pt_edges": "the jet-pT bins that the tokens P(b) stand for (their number sets the vocabulary)",
    "max_length": "with the multiplicity token the vocabulary holds one M(n) per multiplicity up to max_length - 2 "
    "(and count_down an embedding per count)",
}


def incompatible_fields(stored: GPTConfig, config: GPTConfig) -> dict[str, tuple[object, object]]:
    """The fields in which ``config`` cannot take the weights of a GPT of config ``stored``: name -> (stored, given).

    Every field must agree but ``max_length``, which needs to only with the multiplicity
    token: without it (and so without ``count_down``) no weight depends on the length --
    the GPT has no positional encoding -- and a model may read longer sequences than
    the checkpoint's was trained on.
    """
    length_matters = stored.multiplicity_token or config.multiplicity_token
    return {
        f.name: (getattr(stored, f.name), getattr(config, f.name))
        for f in fields(GPTConfig)  # a field added later must agree too, until someone says otherwise
        if getattr(stored, f.name) != getattr(config, f.name) and (f.name != "max_length" or length_matters)
    }


def check_compatible(
    stored: GPTConfig, config: GPTConfig, path: str | os.PathLike, *, what: str = "this model"
) -> None:
    """Refuse, naming the checkpoint ``path``, every field and both values, a config that cannot take its weights."""
    differ = incompatible_fields(stored, config)
    if differ:
        lines = [
            f"{name}: {a!r} in the checkpoint, {b!r} in {what} ({MUST_AGREE.get(name, 'part of the GPT config')})"
            for name, (a, b) in differ.items()
        ]
        msg = (
            f"{path} holds a GPT of another config than {what}'s (in {', '.join(differ)}), whose weights would "
            f"not fit or would mean other tokens:\n    " + "\n    ".join(lines)
        )
        raise ValueError(msg)


def load_pretrained_weights(
    model: nn.Module,
    pretrained: PretrainedGPT | str | os.PathLike,
    config: GPTConfig,
    *,
    parts: tuple[str, ...] = ("backbone",),
    what: str = "this model",
) -> list[str]:
    """Copy the weights of ``parts`` of a GPT checkpoint into the submodules of ``model`` of the same names.

    ``parts`` are a :class:`GPT`'s submodules: "backbone" (embeddings and blocks) and
    "head" (the generative head).  ``config`` is what ``model`` was built with; the
    checkpoint's must be compatible (:func:`check_compatible`).  Everything is checked
    before anything is loaded -- a checkpoint that is not a GPT's, another config, a
    part's weights missing or unexpected -- so nothing is loaded halfway.  Returns the
    loaded tensors' names (``backbone.embedding.weight``, ...).  The one loader of
    pre-trained GPT weights: the tagger of notebook 05 (:func:`omnijet_lib.transfer.load_backbone`)
    and the generative fine-tuning of :func:`~omnijet_lib.training.gpt.fit_gpt`.
    """
    if not isinstance(pretrained, PretrainedGPT):
        pretrained = read_pretrained_gpt(pretrained)
    check_compatible(pretrained.config, config, pretrained.path, what=what)
    weights = {}
    for part in parts:
        weights[part] = {
            k.removeprefix(f"{part}."): v for k, v in pretrained.weights.items() if k.startswith(f"{part}.")
        }
        expected = set(getattr(model, part).state_dict())
        missing, unexpected = sorted(expected - set(weights[part])), sorted(set(weights[part]) - expected)
        if missing or unexpected:
            msg = f"{part} weights of {pretrained.path} do not match: missing {missing}, unexpected {unexpected}"
            raise ValueError(msg)
    for part in parts:
        getattr(model, part).load_state_dict(weights[part])
    return sorted(f"{part}.{k}" for part in parts for k in weights[part])


def load_gpt(path: str | os.PathLike, *, device: str = "auto") -> GPT:
    """A GPT from any checkpoint :func:`fit_gpt` wrote (``best.pt`` or ``last.pt``), in eval mode."""
    config, weights = read_gpt_checkpoint(path)
    model = GPT(config)
    model.load_state_dict(weights)
    return model.to(pick_device(device)).eval()
