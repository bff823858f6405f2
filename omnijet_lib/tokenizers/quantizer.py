"""Vector quantizer of the OmniJet-alpha VQ-VAE (docs/jets.md), after vqtorch's ``VectorQuant``.

The paper's quantizer is vqtorch's (Huh et al. 2023, "Straightening out the straight-through
estimator"): a codebook learned by gradient with the two-sided commitment loss
``(1 - beta) |z_e - sg[z_q]|^2 + beta |sg[z_e] - z_q|^2``, a learned affine re-parameterisation of
the codebook, the synchronised update (nu = 1), k-means initialisation and LRU replacement of
dead codes.  We write it here rather than use ``vector-quantize-pytorch`` because that library
(a) builds the full (N, K) distance matrix and an (N, K) one-hot in every training forward and in
its k-means -- more than 5 GB per step at K = 65 536 and ~20 000 vectors; (b) cannot weight the two
commitment terms separately (beta); (c) calls "affine" a matching of running statistics, not a
learned affine.  The nearest-code search here is chunked, so memory stays bounded at any K.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

# On the CPU, distances are computed in blocks that fit in a core's L2 cache: addmm writes a block
# and argmin reads it back without a trip to main memory, ~2.5x faster than blocks of 64 MB
# (benchmarks/nearest_code.py).  A GPU wants few, large launches instead: there the memory cap
# ``max_block_elements`` sets the block.
CACHE_BLOCK = 2**18  # distances per block on the CPU (1 MB in float32; 2**16 to 2**20 measured, this was best)
# MKL multiplies fewer than 4 rows (or a few columns) by other kernels, whose distances differ in the
# last bit.  With blocks of at least this many rows, and all K codes in one block (unless K exceeds
# the memory cap), a vector's distances -- hence its code -- do not depend on which other vectors
# are searched with it: the tokenizers reorder and batch jets freely.  (On one thread: with several,
# MKL may split a block's rows among threads, and a vector exactly midway between two codes -- a tie
# in exact arithmetic -- can then round either way.)
MIN_ROWS = 4
ARGMIN_GROUP = 128  # codes per group of the two-step argmin, see _argmin_rows


@torch.no_grad()
def nearest_code(x: Tensor, codebook: Tensor, *, max_block_elements: int = 2**24) -> tuple[Tensor, Tensor]:
    """x (N, D), codebook (K, D) -> indices (N,) long, squared distances (N,).

    Chunked over rows (and over codes if K alone exceeds the block) so that no more than
    ``max_block_elements`` distances exist at once; on the CPU a block fits in the cache (``CACHE_BLOCK``).
    The search uses -2 x.c + |c|^2 with ``torch.addmm`` (|x|^2 is the same for every code of a row,
    so it cannot change the argmin); the returned distance is recomputed exactly for the chosen code.
    Ties go to the lower index, as in ``argmin``.
    """
    if x.ndim != 2 or codebook.ndim != 2 or x.shape[1] != codebook.shape[1] or len(codebook) == 0:
        msg = f"nearest_code needs x (N, D) and a non-empty codebook (K, D); got {tuple(x.shape)} and {tuple(codebook.shape)}"
        raise ValueError(msg)
    if max_block_elements < 1:
        msg = f"max_block_elements must be at least 1, got {max_block_elements}"
        raise ValueError(msg)
    codebook = codebook.to(x.dtype)
    n, k = len(x), len(codebook)
    codes_per_block = min(k, max_block_elements)
    target = CACHE_BLOCK if x.device.type == "cpu" else max_block_elements
    rows_per_block = min(max(MIN_ROWS, target // codes_per_block), max(1, max_block_elements // codes_per_block))
    searched = F.pad(x, (0, 0, 0, MIN_ROWS - n)) if 0 < n < MIN_ROWS else x  # zero rows, dropped below: see MIN_ROWS
    c_sq = codebook.pow(2).sum(1)  # (K,)
    indices = torch.empty(len(searched), dtype=torch.long, device=x.device)
    for start in range(0, len(searched), rows_per_block):
        # The last block ends at the last row and is a full block (overlapping the one before): see MIN_ROWS.
        rows = slice(max(0, min(start, len(searched) - rows_per_block)), start + rows_per_block)
        indices[rows] = _nearest_in_block(searched[rows], codebook, c_sq, codes_per_block)
    indices = indices[:n]
    return indices, (x - codebook[indices]).pow(2).sum(1)


def _nearest_in_block(x: Tensor, codebook: Tensor, c_sq: Tensor, codes_per_block: int) -> Tensor:
    """Indices of the nearest codes of the rows x (n, D), over the codebook in chunks of ``codes_per_block``."""
    if codes_per_block >= len(codebook):  # the usual case: all codes at once
        return _argmin_rows(torch.addmm(c_sq, x, codebook.T, alpha=-2))
    best = torch.full((len(x),), float("inf"), dtype=x.dtype, device=x.device)  # (n,)
    best_idx = torch.zeros(len(x), dtype=torch.long, device=x.device)  # (n,)
    for c in range(0, len(codebook), codes_per_block):
        block = torch.addmm(c_sq[c : c + codes_per_block], x, codebook[c : c + codes_per_block].T, alpha=-2)
        value, idx = block.min(1)  # (n,), (n,)
        better = value < best  # strict: ties keep the lower index, as argmin does
        best, best_idx = torch.where(better, value, best), torch.where(better, idx + c, best_idx)
    return best_idx


def _argmin_rows(distances: Tensor, group: int = ARGMIN_GROUP) -> Tensor:
    """``distances.argmin(1)`` for (n, K) distances, ties included, about twice as fast on the CPU.

    An argmin carries indices through its reduction and costs ~3x an ``amin`` per element: find
    each row's first group of ``group`` codes holding its minimum with ``amin``, then take the
    argmin within that group only.  The first group holding the minimum holds its first index.
    """
    n, k = distances.shape
    if k % group or k < 2 * group:
        return distances.argmin(1)
    groups = distances.view(n, k // group, group)  # (n, G, group)
    first = groups.amin(2).argmin(1)  # (n,) the first group holding each row's minimum
    return first * group + groups[torch.arange(n, device=distances.device), first].argmin(1)


@dataclass(frozen=True)
class QuantizerConfig:
    codebook_size: int = 8192  # K: the paper's choice for jets (65 536 for showers)
    code_dim: int = 4  # D: dimension of a code vector (the paper's latent space)
    beta: float = 0.9  # weight of the codebook term; 1 - beta pulls the encoder (0.8 for showers)
    sync_nu: float = 1.0  # synchronised update: the codebook also gets nu x the decoder's gradient
    affine_lr: float = 2.0  # learning-rate multiplier of the learned codebook affine; 0 switches it off
    kmeans_init: bool = True  # initialise the codebook by k-means on the first training batch
    kmeans_iters: int = 10  # Lloyd iterations of that k-means
    replace_every: int = 20  # replace codes unused for this many training batches; 0 switches it off
    search_memory: int = 2**24  # max elements of one (rows x codes) distance block (64 MB in float32)

    def __post_init__(self):
        checks = {
            "codebook_size": (self.codebook_size >= 1, "at least 1"),
            "code_dim": (self.code_dim >= 1, "at least 1"),
            "beta": (0.0 <= self.beta <= 1.0, "in [0, 1]"),
            "sync_nu": (self.sync_nu >= 0.0, "non-negative"),
            "affine_lr": (self.affine_lr >= 0.0, "non-negative"),
            "kmeans_iters": (self.kmeans_iters >= 0, "non-negative"),
            "replace_every": (self.replace_every >= 0, "non-negative"),
            "search_memory": (self.search_memory >= 1, "at least 1"),
        }
        for name, (ok, requirement) in checks.items():
            if not ok:
                msg = f"QuantizerConfig.{name} must be {requirement}, got {getattr(self, name)!r}"
                raise ValueError(msg)


class QuantizerOutput(NamedTuple):
    quantized: Tensor  # (..., D) straight-through (with sync update) output, zeros at masked positions
    codes: Tensor  # (...) long in [0, K), -1 at masked positions
    commit_loss: Tensor  # scalar: beta-weighted two-sided loss WITHOUT alpha, mean over unmasked vectors and D


class VectorQuantizer(nn.Module):
    def __init__(self, config: QuantizerConfig):
        super().__init__()
        self.config = config
        k, d = config.codebook_size, config.code_dim
        self.raw_codebook = nn.Parameter(torch.randn(k, d))  # N(0, 1) like vqtorch's nn.Embedding
        if config.affine_lr > 0:
            # codebook_eff = raw * (1 + lr * scale) + lr * shift, as vqtorch: multiplying the parameter
            # (not its gradient, as a hook would) is what scales the step under Adam, whose update
            # is invariant to the gradient's scale; under Adam the affine moves affine_lr times faster.
            self.affine_scale = nn.Parameter(torch.zeros(d))
            self.affine_shift = nn.Parameter(torch.zeros(d))
        self.register_buffer("initialised", torch.tensor(not config.kmeans_init))  # k-means done (or not wanted)
        self.register_buffer("unused_for", torch.zeros(k, dtype=torch.long))  # training batches since last use
        self.register_buffer("batches_seen", torch.tensor(0))  # training batches, schedules the replacement

    def _affine(self) -> tuple[Tensor, Tensor]:
        lr = self.config.affine_lr
        return 1 + lr * self.affine_scale, lr * self.affine_shift  # (D,), (D,)

    def codebook(self) -> Tensor:
        """(K, D) effective codebook (after the affine), differentiable."""
        if self.config.affine_lr == 0:
            return self.raw_codebook
        scale, shift = self._affine()
        return self.raw_codebook * scale + shift

    @torch.no_grad()
    def _set_effective(self, index: Tensor, vectors: Tensor) -> None:
        """Write the raw codes so that the *effective* codes at ``index`` equal ``vectors``."""
        if self.config.affine_lr > 0:
            scale, shift = self._affine()
            vectors = (vectors - shift) / scale
        self.raw_codebook[index] = vectors.to(self.raw_codebook.dtype)

    @staticmethod
    def _jitter(vectors: Tensor, data: Tensor) -> Tensor:
        # Noise small against the data's spread: copies of one data point become distinct codes.
        return vectors + 1e-3 * data.std(0, correction=0) * torch.randn_like(vectors)

    @torch.no_grad()
    def _kmeans_init(self, z: Tensor) -> None:
        """Lloyd's k-means on the unmasked vectors ``z`` (M, D), through the chunked search.

        With fewer vectors than codes the centroids repeat data points (jittered) and most stay
        where they start, so at 65 536 codes give the first training batch many more vectors than K.
        """
        k = self.config.codebook_size
        if len(z) >= k:
            centroids = z[torch.randperm(len(z), device=z.device)[:k]]  # (K, D)
        else:
            centroids = self._jitter(z[torch.randint(len(z), (k,), device=z.device)], z)  # (K, D)
        for _ in range(self.config.kmeans_iters):
            idx, _ = nearest_code(z, centroids, max_block_elements=self.config.search_memory)  # (M,)
            counts = torch.bincount(idx, minlength=k)  # (K,)
            sums = torch.zeros_like(centroids).index_add_(0, idx, z)  # (K, D)
            filled = counts > 0  # an empty cluster keeps its centroid
            centroids[filled] = sums[filled] / counts[filled, None]
        self._set_effective(torch.arange(k, device=z.device), centroids)
        _same_on_every_process(self.raw_codebook)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _replace_dead_codes(self, z: Tensor) -> None:
        """Move codes unused for ``replace_every`` batches onto random current encoder outputs z (M, D)."""
        dead = (self.unused_for >= self.config.replace_every).nonzero().squeeze(1)  # (n_dead,)
        if len(dead) > 0:
            pick = torch.randint(len(z), (len(dead),), device=z.device)  # default generator: exact resume
            self._set_effective(dead, self._jitter(z[pick], z))
            _same_on_every_process(self.raw_codebook)
            self.unused_for[dead] = 0

    def forward(self, z: Tensor, mask: Tensor | None = None) -> QuantizerOutput:
        """z (..., D), mask (...) bool, True for a real vector -> QuantizerOutput."""
        d = self.config.code_dim
        if z.shape[-1] != d:
            msg = f"expected vectors of dimension code_dim = {d}, got z of shape {tuple(z.shape)}"
            raise ValueError(msg)
        if mask is not None and (mask.dtype != torch.bool or mask.shape != z.shape[:-1]):
            msg = f"mask must be bool of shape {tuple(z.shape[:-1])}, got {mask.dtype} {tuple(mask.shape)}"
            raise ValueError(msg)
        flat = z.reshape(-1, d)  # (N, D)
        keep = None if mask is None else mask.reshape(-1)  # (N,)
        z_e = flat if keep is None else flat[keep]  # (M, D) only real vectors from here on

        # Codebook surgery happens before the graph is built: changing the codes in place afterwards
        # would invalidate tensors autograd saved for this batch's backward.
        if self.training and len(z_e) > 0:
            if not self.initialised:
                self._kmeans_init(z_e.detach())
            elif self.config.replace_every > 0 and self.batches_seen > 0:
                if self.batches_seen % self.config.replace_every == 0:
                    self._replace_dead_codes(z_e.detach())

        codebook = self.codebook()  # (K, D)
        codes, _ = nearest_code(z_e.detach(), codebook.detach(), max_block_elements=self.config.search_memory)  # (M,)
        z_q = codebook[codes]  # (M, D) differentiable in the codebook
        if self.training:
            used = _used_on_any_process(codes, len(self.unused_for))  # under torchrun: every process, every step
            if len(used) > 0:  # an all-padding batch is no batch for the LRU clock
                with torch.no_grad():
                    self.unused_for.add_(1).index_fill_(0, used, 0)
                    self.batches_seen.add_(1)

        # Mean over vectors and components, as vqtorch's loss: alpha = 10 keeps the paper's meaning.
        n = max(z_e.numel(), 1)
        beta = self.config.beta
        commit_loss = (1 - beta) * (z_e - z_q.detach()).pow(2).sum() / n + beta * (z_e.detach() - z_q).pow(2).sum() / n

        # Forward value z_q; the encoder gets the decoder's gradient (straight-through) and the
        # codebook nu times it too (synchronised update), so codes move with the decoder's needs.
        nu = self.config.sync_nu
        z_q_out = z_e + (z_q - z_e).detach() + nu * z_q - (nu * z_q).detach()  # (M, D)

        if keep is None:
            return QuantizerOutput(z_q_out.reshape(z.shape), codes.reshape(z.shape[:-1]), commit_loss)
        quantized = torch.zeros_like(flat).index_put((keep,), z_q_out)  # (N, D)
        all_codes = torch.full((len(flat),), -1, dtype=torch.long, device=z.device).index_put((keep,), codes)  # (N,)
        return QuantizerOutput(quantized.reshape(z.shape), all_codes.reshape(z.shape[:-1]), commit_loss)

    @torch.no_grad()
    def lookup(self, codes: Tensor) -> Tensor:
        """(...) long -> (..., D) effective code vectors; -1 (padding) gives zeros, as in forward."""
        k = self.config.codebook_size
        if codes.numel() > 0 and (codes.min() < -1 or codes.max() >= k):
            msg = f"codes must lie in [0, {k}) or be -1 for padding, got range [{codes.min()}, {codes.max()}]"
            raise ValueError(msg)
        vectors = self.codebook()[codes.clamp(min=0)]  # (..., D)
        return vectors.masked_fill((codes < 0).unsqueeze(-1), 0.0)

    def utilisation(self, codes: Tensor) -> float:
        """Fraction of the K codes that appear in ``codes`` (padding -1 ignored)."""
        return torch.unique(codes[codes >= 0]).numel() / self.config.codebook_size


# Data-parallel training (torchrun, omnijet_lib.training.distributed): each process quantizes its shard of
# the batch, but the codebook must stay one.  k-means and the replacement of dead codes, which draw
# from the process's own vectors, end with rank 0's codebook copied to all; a code counts as used if
# any process used it.  With one process both are no-ops.
def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _same_on_every_process(codebook: Tensor) -> None:
    if _distributed():
        dist.broadcast(codebook.data, src=0)


def _used_on_any_process(codes: Tensor, codebook_size: int) -> Tensor:
    """The codes used in this batch by this process or any other."""
    if not _distributed():
        return codes
    used = torch.bincount(codes, minlength=codebook_size)
    dist.all_reduce(used)
    return used.nonzero().squeeze(1)
