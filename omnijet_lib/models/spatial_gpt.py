"""Direct spatial tokens with a mixture-of-Gaussians energy head, on the GPT backbone (docs/direct_tokens.md).

The upgrade of OmniJet-α_C drops the VQ-VAE for showers: a hit enters the model as
its voxel (x, y, z) and its continuous energy, so nothing is lost to quantisation,
and the model predicts the next hit's voxel as classes and its energy as a density.

Sequence.  Position 0 is START, which carries the condition (the incident energy
and, optionally, the number of hits); position i >= 1 is hit i
(:class:`~omnijet_lib.data.hit_sequences.HitSequences`).  The condition is also
added to every hit position, so no position has to fetch it through attention.
Position i predicts hit i + 1, or STOP after the last hit:

* ``tokenization="joint"``: one class among the 27 000 voxels and STOP;
* ``tokenization="per_axis"``: the layer z (or STOP), then x given z, then y given
  z and x, each with its own head -- a hit's coordinates one after another.

then the hit's log energy ``log(E / MeV) + 1`` (the shower pre-processing's) from a
mixture of K Gaussians given the voxel (:mod:`omnijet_lib.models.energy_mixture`),
trained by its negative log-likelihood and sampled at generation with its own
temperature.  Training uses the true voxel to condition the energy (teacher
forcing); generation samples the voxel first.  How the chain of energies is shaped
and kept at scale is the model's energy strategy
(:mod:`omnijet_lib.models.energy_strategies`).

Inputs: joint -- one embedding per voxel; per axis -- an embedding per axis,
concatenated and projected; plus a linear embedding of the log energy.  Like the
jet GPT there is no positional encoding; the blocks, their key/value cache and the
class heads are :mod:`omnijet_lib.models.gpt`'s.

Number of hits.  With ``condition_on_n_hits`` the model is told how many hits the
shower has, and each position also gets the fraction ``i / n`` of them already
placed, so that the model need not count its own hits through attention.  Such a
model generates exactly the hits asked for (STOP is never drawn), and reads and
predicts a hit's energy relative to the mean it would have if the incident energy
were shared evenly, ``log(E_hit / (E_inc / n))`` (as calorimeter flows normalise
by the incident energy): the simulator's sampling fraction is nearly constant, so
this leaves the model a distribution that hardly moves with E_inc, and the energy
scale -- what the energy sum measures -- comes with the condition.  When only an
energy is asked for, the number of hits is drawn from a log-normal fitted to the
training showers at their incident energies and stored with the model
(:mod:`omnijet_lib.models.shower_sizes`).

Training is :func:`omnijet_lib.training.spatial_gpt.fit_spatial_gpt`, generation
:func:`omnijet_lib.generation.hits.generate_showers`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor, nn

from omnijet_lib.checkpoints import load_checkpoint
from omnijet_lib.data.geometry import ILD_ECAL, CalorimeterGeometry
from omnijet_lib.data.hit_sequences import ORDERS
from omnijet_lib.devices import pick_device
from omnijet_lib.errors import BadDataError
from omnijet_lib.models.energy_mixture import sample_mixture
from omnijet_lib.models.energy_strategies import OLD_FLAGS, EnergyStrategy, strategy_from_flags
from omnijet_lib.models.gpt import Block, GenerativeHead, GPTConfig, KVCache, run_blocks
from omnijet_lib.models.sampling import sample_categorical, sample_from_head
from omnijet_lib.models.shower_sizes import (
    FITTED_QUANTITIES,
    LOG_NORMAL_DEGREE,
    N_RESIDUAL_QUANTILES,
    REFERENCE_INCIDENT_GEV,
    SIZE_RESIDUALS,
    LogNormalInEnergy,
)

TOKENIZATIONS = ("joint", "per_axis")
REFERENCE_N_HITS = 500.0  # the condition's log(n_hits / 500), beside log(E / REFERENCE_INCIDENT_GEV)
MIN_ENERGY_LEFT_MEV = 1e-3  # a budget overspent while generating counts as this much left


@dataclass(frozen=True)
class SpatialGPTConfig:
    tokenization: str = "per_axis"  # "joint" (one class per voxel: 27 000 on the ECAL) or "per_axis" (z, x, y)
    n_components: int = 4  # Gaussians in the energy head
    embed_dim: int = 256  # as the jet GPT of the paper
    n_heads: int = 8
    n_blocks: int = 3
    ffn_dim: int = 1024
    max_hits: int = 1700
    condition_on_n_hits: bool = False  # also condition on the number of hits asked for
    order: str = "energy"  # how the training hits are ordered (see ORDERS): by falling energy, or by layer
    # How the chain of hit energies is shaped and kept at scale: one of ENERGY_STRATEGIES, a chain ("free",
    # "bounded", "largest_of_hits_left") and the additions it uses, e.g. "bounded+energy_budget" (see
    # omnijet_lib.models.energy_strategies).
    energy_strategy: str = "free"
    # Training only, a parameter of the strategies with a bound: Gaussian noise of this width added to the bound
    # (model units) the head places its means from and reads, not to the cut.  A head that cannot trust its
    # predecessor exactly learns to keep to an energy budget.
    anchor_noise: float = 0.0
    log_energy_shift: float = 1.0  # hit feature log(E / MeV) + shift, as ShowerPreprocessingConfig
    # Sampled log energies are kept inside this range (1 keV .. 1 GeV per cell with the default shift), and
    # inside the range of the training hits in the model's units (see SpatialGPT.trained_energy_range): a
    # Gaussian's tail would otherwise, now and then, put a GeV into one cell of a 10 GeV shower.
    log_energy_range: tuple[float, float] = (-5.9, 7.9)
    # The grid the hits lie on: the vocabularies (voxels, or cells per axis) are its sizes.
    geometry: CalorimeterGeometry = ILD_ECAL
    # The shape of the per-shower quantities drawn from fits (hit count, visible energy, hottest cell) about their
    # fitted log mean: "normal" (log-normals) or "empirical" (the training showers' own residuals, for the long
    # low tails of hadron showers; see omnijet_lib.models.shower_sizes.SIZE_RESIDUALS).
    size_residuals: str = "normal"

    def __post_init__(self):
        if isinstance(self.geometry, dict):  # read back from a checkpoint
            object.__setattr__(self, "geometry", CalorimeterGeometry.from_dict(self.geometry))
        if self.tokenization not in TOKENIZATIONS:
            msg = f"tokenization must be one of {TOKENIZATIONS}, got {self.tokenization!r}"
            raise ValueError(msg)
        if self.order not in ORDERS:
            msg = f"order must be one of {ORDERS}, got {self.order!r}"
            raise ValueError(msg)
        self.energy.check(order=self.order, condition_on_n_hits=self.condition_on_n_hits)
        if self.size_residuals not in SIZE_RESIDUALS:
            msg = f"size_residuals must be one of {SIZE_RESIDUALS}, got {self.size_residuals!r}"
            raise ValueError(msg)
        if self.anchor_noise < 0:
            msg = f"anchor_noise must be >= 0, got {self.anchor_noise}"
            raise ValueError(msg)
        if self.anchor_noise > 0 and not self.energy.bounded:
            msg = (
                f"anchor_noise blurs the bound a hit's energy is placed from: it needs a strategy with one (a chain "
                f"'bounded' or 'largest_of_hits_left'), not {self.energy_strategy!r}"
            )
            raise ValueError(msg)
        if self.n_components < 1:
            msg = f"n_components must be >= 1, got {self.n_components}"
            raise ValueError(msg)
        _ = self.blocks  # GPTConfig validates the backbone's sizes
        object.__setattr__(self, "log_energy_range", tuple(float(v) for v in self.log_energy_range))  # from JSON too
        low, high = self.log_energy_range
        if not low < high:
            msg = f"log_energy_range must be (low, high) with low < high, got {self.log_energy_range}"
            raise ValueError(msg)

    @classmethod
    def from_dict(cls, values: dict) -> SpatialGPTConfig:
        """A config from ``asdict`` of one, also of one written before energy strategies (one flag per idea).

        The old flags name the strategy they made (:func:`strategy_from_flags`); an ``anchor_noise``
        on a model without a bound did nothing, and is dropped.
        """
        values = dict(values)
        old = {flag: bool(values.pop(flag)) for flag in OLD_FLAGS if flag in values}
        if old:
            if "energy_strategy" in values:
                msg = f"a config names both an energy_strategy and the old flags {sorted(old)}"
                raise ValueError(msg)
            values["energy_strategy"] = strategy_from_flags(**old)
            if not EnergyStrategy.parse(values["energy_strategy"]).bounded:
                values["anchor_noise"] = 0.0
        return cls(**values)

    @cached_property
    def energy(self) -> EnergyStrategy:
        """The energy strategy, read from its name (which it checks: see ENERGY_STRATEGIES)."""
        return EnergyStrategy.parse(self.energy_strategy)

    @property
    def blocks(self) -> GPTConfig:
        """The backbone's settings (its token vocabulary is not used: hits are embedded directly)."""
        return GPTConfig(
            codebook_size=1, embed_dim=self.embed_dim, n_heads=self.n_heads, n_blocks=self.n_blocks,
            ffn_dim=self.ffn_dim, max_length=self.max_hits + 1,
        )  # fmt: skip

    @property
    def n_conditions(self) -> int:
        return 2 if self.condition_on_n_hits else 1

    @property
    def fitted_quantities(self) -> tuple[str, ...]:
        """The per-shower quantities (see FITTED_QUANTITIES) this model draws from fits to its training showers."""
        uses = {
            "hit_count": self.condition_on_n_hits,
            "hottest_cell": self.energy.fitted_hottest_cell,
            "visible_energy": self.energy.draws_visible_energy,
        }
        return tuple(quantity for quantity in FITTED_QUANTITIES if uses[quantity])


def condition_features(incident_energy, n_hits=None, *, config: SpatialGPTConfig) -> np.ndarray:
    """(N, n_conditions) float32: log(E / 30 GeV) and, if the model uses it, log(n_hits / 500)."""
    incident_energy = np.asarray(incident_energy, dtype=np.float64).reshape(-1)
    if not (np.isfinite(incident_energy).all() and (incident_energy > 0).all()):
        msg = "the direct model is conditioned on the incident energy: every shower needs one > 0 [GeV]"
        raise BadDataError(msg)
    columns = [np.log(incident_energy / REFERENCE_INCIDENT_GEV)]
    if config.condition_on_n_hits:
        if n_hits is None:
            msg = "this model is conditioned on the number of hits: give n_hits"
            raise ValueError(msg)
        n_hits = np.broadcast_to(np.asarray(n_hits, dtype=np.float64), incident_energy.shape)
        if (n_hits < 1).any():
            msg = "a requested number of hits must be >= 1"
            raise ValueError(msg)
        columns.append(np.log(n_hits / REFERENCE_N_HITS))
    return np.stack(columns, axis=1).astype(np.float32)


class SpatialGPT(nn.Module):
    def __init__(self, config: SpatialGPTConfig = SpatialGPTConfig()):
        super().__init__()
        self.config = config
        dim = config.embed_dim
        n_x, n_y, n_z = config.geometry.shape
        if config.tokenization == "joint":
            n_voxels = config.geometry.n_cells
            self.voxel_in = nn.Embedding(n_voxels, dim)
            self.voxel_head = GenerativeHead(dim, n_voxels + 1)  # the last class is STOP
            self.voxel_out = nn.Embedding(n_voxels, dim)  # the chosen voxel, for the energy head
        else:
            self.axis_in = nn.ModuleList(nn.Embedding(n, dim) for n in (n_x, n_y, n_z))
            self.axis_project = nn.Linear(3 * dim, dim)
            self.z_head = GenerativeHead(dim, n_z + 1)  # layers and STOP
            self.x_head = GenerativeHead(dim, n_x)
            self.y_head = GenerativeHead(dim, n_y)
            self.axis_out = nn.ModuleList(nn.Embedding(n, dim) for n in (n_z, n_x, n_y))  # z, x, y as predicted
        self.energy_in = nn.Linear(1, dim)
        self.start = nn.Parameter(0.02 * torch.randn(dim))
        self.condition_in = nn.Linear(config.n_conditions, dim)
        if config.condition_on_n_hits:
            self.placed_in = nn.Linear(1, dim)  # the fraction of the asked hits placed so far
        self.blocks = nn.ModuleList(Block(config.blocks, i) for i in range(config.n_blocks))
        self.energy_head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 3 * config.n_components))
        # Lowest and highest log energy of the training hits, in the model's units (see energy_offset): sampled
        # energies stay inside, so that no draw from a wide component's tail lies beyond every training hit.
        # Unbounded until fit_spatial_gpt sets it.
        self.register_buffer("trained_energy_range", torch.tensor([-math.inf, math.inf]))
        if config.energy.energy_budget:
            self.budget_in = nn.Linear(4, dim)  # budget_features, the bound, whether there is one
        # The log-normals fitted to the training showers (mean, then width coefficients, then any residual
        # quantiles), saved with the weights.
        for quantity in config.fitted_quantities:
            quantiles = N_RESIDUAL_QUANTILES if config.size_residuals == "empirical" else 0
            coefficients = torch.zeros(2 * (LOG_NORMAL_DEGREE + 1) + quantiles, dtype=torch.float64)
            self.register_buffer(f"{quantity}_coefficients", coefficients)
        if config.condition_on_n_hits and config.energy.draws_visible_energy:  # drawn together (see SHOWER_SIZES)
            self.register_buffer("shower_size_correlation", torch.zeros((), dtype=torch.float64))

    @property
    def stop_class(self) -> int:
        geometry = self.config.geometry
        return geometry.n_cells if self.config.tokenization == "joint" else geometry.n_layers

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def embed_hits(self, voxels: Tensor, log_energy: Tensor) -> Tensor:
        """(..., 3) voxels and (...) log energies -> (..., D)."""
        if self.config.tokenization == "joint":
            position = self.voxel_in(flat_voxel(voxels, self.config.geometry.shape))
        else:
            position = self.axis_project(torch.cat([emb(voxels[..., i]) for i, emb in enumerate(self.axis_in)], -1))
        return position + self.energy_in(log_energy.unsqueeze(-1))

    def fitted(self, quantity: str) -> LogNormalInEnergy | None:
        """The log-normal fitted for ``quantity`` (see :data:`FITTED_QUANTITIES`), or None if the model has none."""
        if quantity not in self.config.fitted_quantities:
            return None
        return FITTED_QUANTITIES[quantity].from_tensor(getattr(self, f"{quantity}_coefficients"))

    def set_fitted(self, quantity: str, fit: LogNormalInEnergy) -> None:
        getattr(self, f"{quantity}_coefficients").copy_(fit.as_tensor())

    def sample_hottest_cell(self, condition: Tensor, *, temperature: float, generator) -> Tensor:
        """(B,) log energies (``log(E / MeV) + shift``) of the hottest cell, from the fitted log-normal."""
        incident = REFERENCE_INCIDENT_GEV * torch.exp(condition[:, 0].double()).cpu().numpy()  # GeV
        fit = self.fitted("hottest_cell")
        mean, width = (
            torch.as_tensor(a, dtype=torch.float32, device=condition.device) for a in fit.mean_and_width(incident)
        )
        noise = torch.randn(len(mean), generator=generator, device=condition.device)
        if fit.residual_quantiles:  # the fitted shape of the residuals
            noise = torch.as_tensor(fit.residual(noise.cpu().numpy()), dtype=torch.float32, device=condition.device)
        return mean + temperature * width * noise + self.config.log_energy_shift

    def hidden_states(self, voxels: Tensor, log_energy: Tensor, condition: Tensor, cache: KVCache | None = None):
        """START and hits 1..L -> (B, L + 1, D): position i predicts hit i + 1, or STOP after the last."""
        x = torch.cat([self.start_input(condition), self.hit_inputs(voxels, log_energy, condition, first=1)], dim=1)
        return run_blocks(self.blocks, x, cache, max_length=self.config.blocks.max_length)

    def start_input(self, condition: Tensor) -> Tensor:
        """(B, 1, D): position 0, which carries the condition."""
        x = self.start + self.condition_in(condition)
        if self.config.condition_on_n_hits:
            x = x + self.placed_in(torch.zeros_like(condition[:, :1]))  # none placed yet
        return x[:, None]

    def hit_inputs(self, voxels: Tensor, log_energy: Tensor, condition: Tensor, *, first: int) -> Tensor:
        """Hits (B, T, 3), (B, T) at positions first..first + T - 1 -> (B, T, D), the condition added."""
        energy = log_energy - self.energy_offset(condition)[:, None]
        x = self.embed_hits(voxels, energy) + self.condition_in(condition)[:, None]
        if self.config.condition_on_n_hits:
            placed = torch.arange(first, first + voxels.shape[1], device=voxels.device, dtype=torch.float32)
            fraction = placed / self.asked_hits(condition).to(torch.float32).clamp(min=1)[:, None]  # (B, T)
            x = x + self.placed_in(fraction.unsqueeze(-1))
        return x

    def asked_hits(self, condition: Tensor) -> Tensor:
        """(B,) the number of hits asked for, back from the condition features."""
        return torch.round(torch.exp(condition[:, 1].double()) * REFERENCE_N_HITS)

    def energy_offset(self, condition: Tensor) -> Tensor:
        """(B,) what the model's log hit energy is relative to: log((E_inc / n) / (30 GeV / 500)), or 0."""
        if not self.config.condition_on_n_hits:
            return torch.zeros_like(condition[:, 0])
        return condition[:, 0] - condition[:, 1]

    def voxel_condition(self, hidden: Tensor, voxels: Tensor) -> Tensor:
        """The energy head's input: the hidden state plus the (chosen or true) voxel's embedding."""
        if self.config.tokenization == "joint":
            return hidden + self.voxel_out(flat_voxel(voxels, self.config.geometry.shape))
        z, x, y = (self.axis_out[i](voxels[..., axis]) for i, axis in enumerate((2, 0, 1)))
        return hidden + z + x + y

    def budget_features(self, placed: Tensor, visible: Tensor, hits_left: Tensor, condition: Tensor) -> Tensor:
        """What the energy head of an ``energy_budget`` strategy reads about the shower's energy: (B, ..., 2).

        ``placed`` (B, ...) the visible energy of the hits before [MeV], ``visible`` (B,) the
        shower's visible energy [MeV], ``hits_left`` (B, ...) the hits still to place, this one
        included.  Features: the fraction of ``visible`` used, and the log of what is left per
        hit left, in the model's units.  Under teacher forcing the last hit's energy is exactly
        what is left, so the head learns to spend the budget; a chain that has run high or
        low while generating sees it, and is pulled back.
        """
        shape = (-1,) + (1,) * (placed.dim() - 1)
        visible = visible.reshape(shape).to(placed.dtype)
        left = (visible - placed).clamp(min=MIN_ENERGY_LEFT_MEV) / hits_left.to(placed.dtype).clamp(min=1)
        per_hit = torch.log(left) + self.config.log_energy_shift - self.energy_offset(condition).reshape(shape)
        return torch.stack([placed / visible, per_hit], dim=-1)

    def energy_mixture(self, hidden: Tensor, voxels: Tensor, upper: Tensor, budget: Tensor | None = None) -> Tensor:
        """The energy head's mixture (..., 3K) for hits at ``voxels``, given hidden states (..., D).

        Where the hit has an upper bound (finite ``upper``), the component means are
        placed relative to it: the head predicts how far below its predecessor a hit
        lies, a step small beside the energy itself, rather than read its predecessor's
        energy off the hidden state precisely enough to place the means below it (placed
        in absolute terms, means that land above the bound make the cut draws stick to it,
        and generated energies stop falling).  In training, ``anchor_noise`` blurs the
        bound the means are placed from (not the cut).

        With an ``energy_budget`` strategy the head also reads its bound and ``budget``
        (..., 2), the :meth:`budget_features`, exactly rather than through the blocks.
        """
        head_input = self.voxel_condition(hidden, voxels)
        bounded = torch.isfinite(upper)
        anchor = torch.where(bounded, upper, 0.0).to(hidden.dtype)
        if self.training and self.config.anchor_noise > 0:
            anchor = anchor + self.config.anchor_noise * torch.randn_like(anchor) * bounded
        if self.config.energy.energy_budget:
            if budget is None:
                msg = "a model with energy_budget needs its budget_features"
                raise ValueError(msg)
            features = torch.cat([budget.to(hidden.dtype), anchor[..., None], bounded[..., None].to(hidden.dtype)], -1)
            head_input = head_input + self.budget_in(features)
        raw = self.energy_head(head_input)
        k = self.config.n_components
        anchor = anchor.unsqueeze(-1)
        return torch.cat([raw[..., :k], raw[..., k : 2 * k] + anchor, raw[..., 2 * k :]], dim=-1)

    @torch.no_grad()
    def sample_hit(
        self,
        hidden: Tensor,
        condition: Tensor,
        *,
        temperature: float,
        energy_temperature: float,
        generator,
        allow_stop: bool = True,
        previous: tuple[Tensor, Tensor],
        budget: Tensor | None = None,
        hits_left: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """From hidden states (B, D) and conditions (B, C): voxels (B, 3), log energies (B,), rows that drew STOP (B,).

        ``previous`` = the previous hit's layer (B,) and energy in the model's units (B,),
        +inf before the first hit: the bounds of a strategy with one;
        ``budget`` (B, 2) the :meth:`budget_features`, for an ``energy_budget`` strategy;
        ``hits_left`` (B,) the hits still to place, this one included, for ``largest_of_hits_left``.
        """
        shape = self.config.geometry.shape
        if self.config.tokenization == "joint":  # straight from the output layer (27 001 classes on the ECAL)
            linear, n_voxels = self.voxel_head.linear, self.config.geometry.n_cells
            choice = sample_from_head(
                hidden, linear.weight, linear.bias, n_classes=n_voxels + allow_stop, temperature=temperature,
                generator=generator,
            )  # fmt: skip
            stop = choice == n_voxels
            voxels = unflat_voxel(choice.clamp(max=n_voxels - 1), shape)
        else:
            n_layers = shape[2]
            logits = self.z_head(hidden)
            if not allow_stop:
                logits[:, n_layers] = -math.inf
            z = sample_categorical(logits, temperature=temperature, generator=generator)
            stop = z == n_layers
            z = z.clamp(max=n_layers - 1)
            h = hidden + self.axis_out[0](z)
            x = sample_categorical(self.x_head(h), temperature=temperature, generator=generator)
            h = h + self.axis_out[1](x)
            y = sample_categorical(self.y_head(h), temperature=temperature, generator=generator)
            voxels = torch.stack([x, y, z], dim=-1)
        upper = upper_bounds(self.config, voxels[:, 2], *previous)
        with torch.autocast(hidden.device.type, enabled=False):  # energies in fp32 whatever the generation's precision
            raw = self.energy_mixture(hidden.float(), voxels, upper, None if budget is None else budget.float())
        largest_of = hits_left if self.config.energy.largest_of_hits_left else None
        log_energy = sample_mixture(
            raw, temperature=energy_temperature, generator=generator, upper=upper, largest_of=largest_of
        )
        log_energy = log_energy.clamp(*self.trained_energy_range) + self.energy_offset(condition)
        first = previous[0] < 0  # no hit before
        if self.config.energy.fitted_hottest_cell and first.any():
            hottest = self.sample_hottest_cell(condition, temperature=energy_temperature, generator=generator)
            log_energy = torch.where(first, hottest, log_energy)
        return voxels, log_energy.clamp(*self.config.log_energy_range), stop


def flat_voxel(voxels: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """(..., 3) x, y, z -> (...) index (x * n_y + y) * n_z + z on a grid of ``shape`` (n_x, n_y, n_z)."""
    _, n_y, n_z = shape
    return (voxels[..., 0] * n_y + voxels[..., 1]) * n_z + voxels[..., 2]


def unflat_voxel(index: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """The inverse of :func:`flat_voxel`."""
    _, n_y, n_z = shape
    return torch.stack([index // (n_y * n_z), index // n_z % n_y, index % n_z], dim=-1)


def upper_bounds(config: SpatialGPTConfig, layer: Tensor, previous_layer: Tensor, previous_energy: Tensor) -> Tensor:
    """Each hit's upper energy bound (model units) from its predecessor: +inf where there is none.

    ``previous_energy`` is +inf before the first hit.  Energy order: always the previous hit's
    energy; layer order: only within the previous hit's layer.  +inf everywhere unless the
    model's energy strategy has a bound.
    """
    if not config.energy.bounded:
        return torch.full_like(previous_energy, math.inf)
    if config.order == "energy":
        return previous_energy
    return torch.where(layer == previous_layer, previous_energy, math.inf)


def load_spatial_gpt(path: str | os.PathLike, *, device: str = "auto") -> SpatialGPT:
    """A direct model from any checkpoint :func:`~omnijet_lib.training.spatial_gpt.fit_spatial_gpt` wrote, in eval mode.

    Checkpoints written before energy strategies, with one flag per idea, load as the
    strategy their flags made (:meth:`SpatialGPTConfig.from_dict`).
    """
    checkpoint = load_checkpoint(path)
    describe = checkpoint.get("describe") or {}
    if "spatial_config" not in describe:
        msg = f"{path} is not a direct-spatial-token checkpoint (its description holds {sorted(describe)})"
        raise ValueError(msg)
    model = SpatialGPT(SpatialGPTConfig.from_dict(describe["spatial_config"]))
    state = dict(checkpoint["model"])
    if hasattr(model, "shower_size_correlation"):  # saved before the two were drawn together: independently
        state.setdefault("shower_size_correlation", torch.zeros((), dtype=torch.float64))
    model.load_state_dict(state)
    return model.to(pick_device(device)).eval()
