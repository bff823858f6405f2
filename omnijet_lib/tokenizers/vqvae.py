"""VQ-VAE tokenizers: unconditional (per-constituent MLP) and conditional (NormFormer over the jet).

The encoder maps each constituent to a 4-d latent, the quantizer replaces it by
the nearest of K code vectors, the decoder maps codes back to constituents.

- unconditional: encoder and decoder see one constituent at a time, so a token
  always decodes to the same point (a fixed point in feature space);
- conditional: encoder and decoder are NormFormer blocks attending over the
  whole jet, so a token's meaning depends on its context — one token decodes
  to a "blob" of nearby points (the paper's Fig. 2), and the jet as a whole is
  reproduced far better for the same K.

Loss (docs/jets.md): MSE(x, x_hat) over real constituents + alpha * L_commit.

Beyond the paper, ``jet_weight`` adds a jet-level term (:func:`jet_reconstruction_loss`):
the reconstructed jet's four-momentum against the original's, relative to its pT, and
its mass relative to the original mass.  A per-constituent MSE counts a soft constituent
as much as a hard one and lets a decoder's errors line up across a jet; the jet mass sees
both.  Only the conditional decoder, which sees the whole jet, can share a correction
among the constituents.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omnijet_lib.data.preprocessing import FEATURES, PreprocessingConfig
from omnijet_lib.devices import pick_device
from omnijet_lib.networks import mlp
from omnijet_lib.tokenizers.base import Tokenizer, check_features, preprocessing_from_state
from omnijet_lib.tokenizers.quantizer import QuantizerConfig, VectorQuantizer
from omnijet_lib.tokenizers.tokens import codes_to_tokens, tokens_to_codes


@dataclass(frozen=True)
class VQVAEConfig:
    conditional: bool = True  # NormFormer over the whole jet (the paper's choice) or a per-constituent MLP
    n_features: int = len(FEATURES)  # log_pt, eta_rel, phi_rel
    hidden_dim: int = 128  # width of encoder and decoder
    n_layers: int | None = None  # None: the paper's 4 NormFormer blocks (conditional) or 3 hidden layers (MLP)
    n_heads: int = 8  # attention heads of a NormFormer block
    alpha: float = 10.0  # weight of the commitment loss against the reconstruction MSE
    jet_weight: float = 0.0  # weight of the jet-level term (jets only; 0: the paper's loss), see module docstring
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    @property
    def layers(self) -> int:
        if self.n_layers is not None:
            return self.n_layers
        return 4 if self.conditional else 3

    def __post_init__(self):
        if self.jet_weight < 0:
            msg = f"jet_weight must be >= 0, got {self.jet_weight}"
            raise ValueError(msg)
        if self.hidden_dim % self.n_heads:
            msg = f"hidden_dim ({self.hidden_dim}) must be divisible by n_heads ({self.n_heads})"
            raise ValueError(msg)

    @classmethod
    def from_dict(cls, d: dict) -> VQVAEConfig:
        return cls(**{**d, "quantizer": QuantizerConfig(**d["quantizer"])})


class NormFormerBlock(nn.Module):
    """LN -> MHA -> LN -> residual; LN -> Linear -> SiLU -> Linear -> residual (docs/jets.md).

    The extra LayerNorm after attention (NormFormer, Shleifer et al. 2021) keeps
    the residual stream's scale stable without warm-up tricks.
    """

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        self.norm_out = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.norm_out(self.attend(self.norm_in(x), mask))
        x = x + self.mlp(x)
        return x * mask.unsqueeze(-1)  # padding stays exactly zero

    def attend(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Self-attention over the real entries, with ``self.attention``'s weights.

        Written out with ``scaled_dot_product_attention`` rather than calling the
        module: without gradients, ``nn.MultiheadAttention`` takes a "fast path" that
        turns a padded batch into nested tensors, ~50x slower on the CPU than this at
        a shower's 1700 hits; SDPA also never holds the (N x N) weights when it can avoid it.
        """
        a = self.attention
        batch, n, dim = h.shape
        q, k, v = F.linear(h, a.in_proj_weight, a.in_proj_bias).split(dim, dim=-1)  # (B, N, C) each
        q, k, v = (t.view(batch, n, a.num_heads, dim // a.num_heads).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])  # keys: real entries only
        return a.out_proj(out.transpose(1, 2).reshape(batch, n, dim))


class NormFormer(nn.Module):
    """Linear in -> NormFormer blocks over the set of constituents -> Linear out."""

    def __init__(self, n_in: int, dim: int, n_out: int, n_blocks: int, n_heads: int):
        super().__init__()
        self.project_in = nn.Linear(n_in, dim)
        self.blocks = nn.ModuleList(NormFormerBlock(dim, n_heads) for _ in range(n_blocks))
        self.project_out = nn.Linear(dim, n_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # A jet with no constituents would leave attention nothing to attend to (NaN);
        # let it attend to its first (padding) slot instead — its output is masked anyway.
        attend = mask.clone()
        attend[:, 0] |= ~mask.any(dim=1)
        h = self.project_in(x) * attend.unsqueeze(-1)
        for block in self.blocks:
            h = block(h, attend)
        return self.project_out(h)


class VQVAEOutput(NamedTuple):
    reconstruction: torch.Tensor  # (B, N, F), 0 where masked
    codes: torch.Tensor  # (B, N) long, -1 where masked
    loss: torch.Tensor  # scalar: reconstruction_loss + alpha * commit_loss
    reconstruction_loss: torch.Tensor  # MSE over real constituents
    commit_loss: torch.Tensor


class VQVAE(nn.Module):
    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = config
        c, q = config, config.quantizer
        if c.conditional:
            self.encoder = NormFormer(c.n_features, c.hidden_dim, q.code_dim, c.layers, c.n_heads)
            self.decoder = NormFormer(q.code_dim, c.hidden_dim, c.n_features, c.layers, c.n_heads)
        else:
            self.encoder = mlp((c.n_features, *[c.hidden_dim] * c.layers, q.code_dim))
            self.decoder = mlp((q.code_dim, *[c.hidden_dim] * c.layers, c.n_features))
        self.quantizer = VectorQuantizer(q)

    def _run(self, net: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = net(x, mask) if self.config.conditional else net(x)
        return out * mask.unsqueeze(-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> VQVAEOutput:
        z = self._run(self.encoder, x, mask)  # (B, N, D)
        q = self.quantizer(z, mask)
        x_hat = self._run(self.decoder, q.quantized, mask)  # (B, N, F)
        mse = F.mse_loss(x_hat[mask], x[mask])
        return VQVAEOutput(x_hat, q.codes, mse + self.config.alpha * q.commit_loss, mse, q.commit_loss)

    @torch.inference_mode()  # no autograd bookkeeping at all: the codes are never differentiated
    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, N, F) -> (B, N) code indices, -1 where masked."""
        return self.quantizer(self._run(self.encoder, x, mask), mask).codes

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, N) code indices -> (B, N, F) features, 0 where masked."""
        z_q = self.quantizer.lookup(codes.clamp(min=0)) * mask.unsqueeze(-1)
        return self._run(self.decoder, z_q, mask)


# How far a batch is padded changes a conditional network's output for a jet in the last float bit
# (attention sums over the padded length), but not at all between lengths that are multiples of
# this -- measured on the CPU with torch 2.13 and MKL, where a vector holds 16 float32 (AVX-512):
# presumably whole vectors of padding add exact zeros, and only a partly filled one is summed in
# another order.  tests/test_tokenizers.py checks it.
LENGTH_MULTIPLE = 16


def trim_to_longest(
    features: torch.Tensor, mask: torch.Tensor, *, multiple: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a batch after its last column holding a real entry, rounded up to a ``multiple`` of columns."""
    used = mask.any(dim=0).nonzero()
    longest = int(used.max()) + 1 if len(used) else 1
    longest = min(-(-longest // multiple) * multiple, mask.shape[1])
    return features[:, :longest], mask[:, :longest]


def extents(mask: torch.Tensor) -> torch.Tensor:
    """(B, N) mask -> (B,) long: each row's last real column + 1 (0 for a row without any)."""
    positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    return (mask * positions).amax(dim=1) if mask.shape[1] else mask.new_zeros(len(mask), dtype=torch.long)


# What jet_reconstruction_loss measures, kept with a training run (before: the mass error relative to pT)
JET_TERM = "four-momentum error / pT, mass error / mass"
# The smallest mass a jet's mass error is measured against, as a fraction of its pT
# (a top jet has m / pT ~ 0.3, a QCD jet ~ 0.1 or more).
MASS_FLOOR = 0.05


def jet_four_momentum(
    features: torch.Tensor, mask: torch.Tensor, preprocessing: PreprocessingConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled constituents (B, N, 3) -> the jet's (E, px, py, pz) (B, 4) and scalar pT sum (B,) [GeV].

    Massless constituents at (eta_rel, phi_rel): the jet in the frame of its axis, which
    differs from the lab frame by a boost along the beam and a rotation about it, so its
    mass is the jet's mass.
    """
    log_pt, eta, phi = features.unbind(dim=-1)
    pt = torch.exp(log_pt + preprocessing.log_pt_shift) * mask
    eta, phi = eta / preprocessing.angle_scale, phi / preprocessing.angle_scale
    momenta = torch.stack([pt * torch.cosh(eta), pt * torch.cos(phi), pt * torch.sin(phi), pt * torch.sinh(eta)], -1)
    return momenta.sum(dim=1), pt.sum(dim=1)


def jet_reconstruction_loss(
    features: torch.Tensor, reconstruction: torch.Tensor, mask: torch.Tensor, preprocessing: PreprocessingConfig
) -> torch.Tensor:
    """Mean over jets of |P_hat - P|^2 / pT^2 + (m_hat - m)^2 / m^2: four-momentum and mass errors.

    Each is relative to its own scale.  Measured against pT, as the four-momentum is, a top
    jet's 6 GeV mass error would weigh (6 / 600)^2 = 1e-4, a hundredth of the constituent MSE,
    and the mass would hardly be trained.  Jets narrower than ``MASS_FLOOR`` x pT (and
    one-constituent jets, of mass 0) measure the mass error against that floor instead.
    """
    (momentum, pt), (momentum_hat, _) = (jet_four_momentum(f, mask, preprocessing) for f in (features, reconstruction))
    pt = pt.detach().clamp(min=1e-3)  # a jet's own pT: hard and soft jets count alike
    sqrt_floor = 1e-6 * pt.square()  # sqrt has no finite gradient at a mass of 0 (a one-constituent jet)

    def mass(p):
        return torch.sqrt((p[:, 0].square() - p[:, 1:].square().sum(dim=-1)).clamp(min=0) + sqrt_floor)

    m, m_hat = mass(momentum), mass(momentum_hat)
    mass_scale = torch.maximum(m.detach(), MASS_FLOOR * pt)
    momentum_error = (momentum_hat - momentum).square().sum(dim=-1) / pt.square()
    return (momentum_error + ((m_hat - m) / mass_scale).square()).mean()


class VQVAETokenizer(Tokenizer):
    kind = "vqvae"

    def __init__(
        self,
        config: VQVAEConfig = VQVAEConfig(),
        preprocessing: PreprocessingConfig = PreprocessingConfig(),
        *,
        device: str = "auto",
        batch_size: int | None = None,  # jets per forward pass when encoding or decoding; None: by device
        seed: int | None = None,
    ):
        """``seed``: the initial weights' seed; None draws them from torch's global RNG as it stands."""
        self.config = config
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        self.device = pick_device(device)
        if seed is None:
            self.model = VQVAE(config)
        else:  # the same weights whatever ran before (in a notebook: other tokenizers); torch's RNG left as it was
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.model = VQVAE(config)
        self.model.to(self.device)
        self.history: list[dict] = []

    @property
    def codebook_size(self) -> int:
        return self.config.quantizer.codebook_size

    def to(self, device: str) -> VQVAETokenizer:
        self.device = pick_device(device)
        self.model.to(self.device)
        return self

    def describe(self) -> dict:
        """What a training run of this tokenizer stores and checks when it resumes."""
        describe = {"kind": self.kind, "config": asdict(self.config), "preprocessing": self.preprocessing.to_dict()}
        if self.config.jet_weight > 0:  # a run with the older jet term is not continued with this one
            describe["jet_term"] = JET_TERM
        return describe

    def _batch_size(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        # On the CPU a batch's activations should stay in the caches: 256 jets encode ~1.7x faster
        # than 1024 at the paper's size (32 to 256 are alike).  A GPU wants large batches.
        return 256 if self.device.type == "cpu" else 1024

    def batched(self, fn, x: torch.Tensor, mask: torch.Tensor, *, dtype) -> torch.Tensor:
        """Apply ``fn`` in batches of jets on the tokenizer's device; results come back on the CPU, in order.

        The jets go through ``fn`` shortest first, so that a batch, cut to its longest jet, holds
        little padding: in a batch of mixed jets nearly every row is padded to the 128 of the
        longest, and a conditional network computes (and attends over) all of it.  A jet's result
        does not depend on its batch, to the last bit (``LENGTH_MULTIPLE``, ``quantizer.MIN_ROWS``).
        """
        was_training = self.model.training
        self.model.eval()
        out = None
        try:
            order = torch.argsort(extents(mask), stable=True)
            batch_size = self._batch_size()
            for i in range(0, len(x), batch_size):
                rows = order[i : i + batch_size]
                batch, batch_mask = trim_to_longest(x[rows], mask[rows], multiple=LENGTH_MULTIPLE)
                result = fn(batch.to(self.device), batch_mask.to(self.device)).cpu()
                if out is None:  # (B, N) codes or (B, N, F) features, padding beyond the cut
                    out = torch.full(
                        (len(x), x.shape[1], *result.shape[2:]), -1 if dtype == torch.long else 0, dtype=dtype
                    )
                out[rows, : result.shape[1]] = result.to(dtype)
        finally:
            self.model.train(was_training)
        return out if out is not None else torch.empty((0, *x.shape[1:2]), dtype=dtype)

    def encode(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        features, mask = check_features(features, mask, n_features=self.config.n_features)
        codes = self.batched(self.model.encode, torch.from_numpy(features), torch.from_numpy(mask), dtype=torch.long)
        return codes_to_tokens(codes.numpy(), mask)

    def decode(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mask = np.asarray(mask, dtype=bool)
        codes = torch.from_numpy(tokens_to_codes(tokens, mask, self.codebook_size))
        out = self.batched(self.model.decode, codes, torch.from_numpy(mask), dtype=torch.float32)
        return out.reshape(*mask.shape, self.config.n_features).numpy()

    def state(self) -> dict:
        weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        return {"config": asdict(self.config), "state_dict": weights, "history": self.history}

    @classmethod
    def from_state(cls, state: dict) -> VQVAETokenizer:
        tokenizer = cls(VQVAEConfig.from_dict(state["config"]), preprocessing_from_state(state), device="cpu")
        tokenizer.model.load_state_dict(state["state_dict"])
        tokenizer.history = list(state.get("history", []))
        return tokenizer
