"""Direct spatial tokens with a mixture-of-Gaussians energy head, on the GPT backbone (docs/direct_tokens.md).

The upgrade of OmniJet-α_C drops the VQ-VAE for showers: a hit enters the model as
its voxel (x, y, z) and its continuous energy, so nothing is lost to quantisation,
and the model predicts the next hit's voxel as classes and its energy as a density.

Sequence.  Position 0 is START, which carries the condition (the incident energy
and, optionally, the number of hits); position i >= 1 is hit i.  The condition is
also added to every hit position, so no position has to fetch it through attention.
Position i predicts hit i + 1, or STOP after the last hit:

* ``tokenization="joint"``: one class among the 27 000 voxels and STOP;
* ``tokenization="per_axis"``: the layer z (or STOP), then x given z, then y given
  z and x, each with its own head -- a hit's coordinates one after another.

then the hit's log energy ``log(E / MeV) + 1`` (the shower pre-processing's) from a
mixture of K Gaussians given the voxel, trained by its negative log-likelihood and
sampled at generation with its own temperature.  Training uses the true voxel to
condition the energy (teacher forcing); generation samples the voxel first.

Inputs: joint -- one embedding per voxel; per axis -- an embedding per axis,
concatenated and projected; plus a linear embedding of the log energy.  Like the
jet GPT there is no positional encoding; the blocks and their key/value cache are
:mod:`omnijet_lib.models.gpt`'s.

Number of hits.  With ``condition_on_n_hits`` the model is told how many hits the
shower has, and each position also gets the fraction ``i / n`` of them already
placed: without it the model must count its own hits through attention, which a
small model does badly -- it stops early and, in energy order, lets the energies
drift.  Such a model generates exactly the hits asked for (STOP is never drawn),
and reads and predicts a hit's energy relative to the mean it would have if the
incident energy were shared evenly, ``log(E_hit / (E_inc / n))`` (as calorimeter
flows normalise by the incident energy): the simulator's sampling fraction is
nearly constant, so this leaves the model a distribution that hardly moves with
E_inc, and the energy scale -- what the energy sum measures -- comes with the condition.
When only an energy is asked for, the number of hits is drawn from
:class:`HitCountModel`, a log-normal fitted to the training showers at their
incident energies and stored with the model -- as shower-size models do in point-
cloud generators (e.g. CaloClouds).  A model that also needs the visible energy draws
both together, with their correlation in the training showers (:func:`draw_shower_sizes`).

Bounded energies.  The order bounds each energy by its predecessor's: every hit in
energy order, a hit in the same layer in layer order.  With ``bounded_by_previous``
the mixture is cut at that bound and renormalised, in the likelihood and in sampling,
so no probability goes to energies the order forbids.  Unbounded, a small model
spends a wide component on them: its draws then run past the hottest cells now and
then, and in layer order the first hit of a layer is predicted about as cold as the
last hit of the layer before.  Where a bound applies, the mixture's means are placed
relative to it (:meth:`SpatialGPT.energy_mixture`).  A price while generating: each
draw bounds the next, so a draw too low is never made up for and an error travels
down the rest of the chain -- the first, unbounded hit sets the scale of all that
follow.  An energy temperature below 1 narrows every cut Gaussian towards its bound,
so the energies then fall too slowly.

The scale of the chain.  Generating in energy order, the sum of a shower's energies
followed its first draw (correlation 0.9, against 0.0 in the simulator), and that draw,
learnt from one example per shower, was far too wide.  And each draw placed a little
too close below its predecessor carries the whole rest of the chain up: the energy
sum then ran 10-20 % high.  The options:

* ``fitted_hottest_cell``: the first hit -- the hottest cell -- takes its energy from
  a log-normal in E_inc fitted to the training showers (:class:`LogNormalInEnergy`, as
  the number of hits);
* ``largest_of_hits_left`` (energy order): the head gives the density of one hit among
  those still to place, and a hit's energy is drawn as their largest -- the order
  statistic.  The step down to the next energy then follows from that spectrum and the
  number of hits left, not from a step size the head must get right to ~0.1 % at every
  hit; the low-energy end of the chain comes out as in the simulator;
* ``energy_budget``: the energy head also reads how much of the shower's visible energy
  the hits so far have used and what is left per hit still to place
  (:meth:`SpatialGPT.budget_features`).  Trained on true showers, whose last hit takes
  exactly what is left.  ``anchor_noise`` blurs, in training only, the bound the means
  are placed from, so that the head learns to read the budget rather than follow its
  predecessor alone.  A price: the budget is spent.  Where the hottest hits run a
  little high, too little is left for the last hits, and they fall to ~1 keV, below
  any simulated hit (notebook 07 reports the fraction of hits below 10 keV);
* ``rescale_to_visible_energy``: generation scales each shower's energies by one factor,
  so that they sum to a visible energy drawn from a log-normal fitted to the training
  showers -- as CaloClouds scales its point clouds to the energy its ShowerFlow draws.
  The scale then comes from the fit, the shape of the shower from the GPT.

The budget and the rescale both draw the visible energy from the fit, or take it asked for.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from omnijet_lib.checkpoints import load_checkpoint
from omnijet_lib.data.shower_preprocessing import voxelise
from omnijet_lib.data.showers import GRID_SIZE, Showers, check_showers, concatenate_showers
from omnijet_lib.devices import pick_device
from omnijet_lib.errors import BadDataError
from omnijet_lib.generation.tokens import COMPACT_FRACTION
from omnijet_lib.models.gpt import Block, GPTConfig, KVCache, chunked_cross_entropy, run_blocks
from omnijet_lib.models.sampling import sample_categorical
from omnijet_lib.training import StepOutput, TrainingConfig, TrainingResult, train

TOKENIZATIONS = ("joint", "per_axis")
ORDERS = ("energy", "layer")  # hits by falling energy (the paper), or by layer, then falling energy
N_VOXELS = GRID_SIZE**3
LOG_SIGMA_RANGE = (-7.0, 3.0)  # a component's log width is clamped here: no collapse onto one training value
REFERENCE_INCIDENT_GEV = 30.0  # the condition is log(E / 30 GeV): about -1.1..1.2 over 10-100 GeV
REFERENCE_N_HITS = 500.0  # and log(n_hits / 500)
MIN_ENERGY_LEFT_MEV = 1e-3  # a budget overspent while generating counts as this much left
LOG_NORMAL_DEGREE = 2  # a fitted log-normal's mean is a polynomial of this degree in log E ...
# ... and its width of this one: a quadratic through the |residuals| of a few hundred showers bends away at the ends
# of the energy range (at 10 GeV it gave the hit count half its width).
LOG_NORMAL_WIDTH_DEGREE = 1


@dataclass(frozen=True)
class SpatialGPTConfig:
    tokenization: str = "per_axis"  # "joint" (27 000 voxel classes) or "per_axis" (z, then x, then y)
    n_components: int = 4  # Gaussians in the energy head
    embed_dim: int = 256  # as the jet GPT of the paper
    n_heads: int = 8
    n_blocks: int = 3
    ffn_dim: int = 1024
    max_hits: int = 1700
    condition_on_n_hits: bool = False  # also condition on the number of hits asked for
    order: str = "energy"  # how the training hits are ordered (see ORDERS): by falling energy, or by layer
    # Cut the energy density at the previous hit's energy wherever the order makes that an upper bound (every
    # hit after the first in energy order; a hit in the same layer as the previous one in layer order), in
    # training and sampling: the model then never spends probability on energies its order forbids.
    bounded_by_previous: bool = False
    # The energy head also reads the state of the chain exactly: its bound, and how much of the shower's visible
    # energy the hits so far have used, and what is left per hit still to place (see SpatialGPT.budget_features).
    # Generation draws the visible energy from a log-normal in E_inc fitted to the training showers.  Needs
    # condition_on_n_hits (the hits still to place).
    energy_budget: bool = False
    # Energy order: the first hit -- the hottest cell -- takes its energy from a log-normal in E_inc fitted to the
    # training showers (LogNormalInEnergy) instead of the head, which learns it from one example per shower.
    fitted_hottest_cell: bool = False
    # Training only: Gaussian noise of this width added to the bound (model units) the head places its means
    # from and reads, not to the cut.  A head that cannot trust its predecessor exactly learns to keep to the
    # budget: generated chains then drift less (see the module docstring).
    anchor_noise: float = 0.0
    # Energy order, the number of hits known: the head gives the density g of one hit among the n still to place
    # (cut at the previous energy, G its CDF), and a hit's energy is the largest of them: n g G^(n-1) / G(bound)^n,
    # in training and sampling.  How far one energy lies below the next then follows from the spectrum of the
    # hits left and their number, rather than from a step of ~0.1 % the head has to get right at every hit.
    largest_of_hits_left: bool = False
    # Generation: scale each shower's hit energies so that they sum to its visible energy, drawn from a log-normal in
    # E_inc fitted to the training showers (or asked for) -- as CaloClouds calibrates its point clouds to the energy
    # its ShowerFlow draws.  The GPT gives where a shower's energy goes and how its hits share it; the fit gives the
    # scale, which a chain of energies, each drawn from the one before, does not keep (see the module docstring).
    rescale_to_visible_energy: bool = False
    log_energy_shift: float = 1.0  # hit feature log(E / MeV) + shift, as ShowerPreprocessingConfig
    # Sampled log energies are kept inside this range (1 keV .. 1 GeV per cell with the default shift), and
    # inside the range of the training hits in the model's units (see SpatialGPT.trained_energy_range): a
    # Gaussian's tail would otherwise, now and then, put a GeV into one cell of a 10 GeV shower.
    log_energy_range: tuple[float, float] = (-5.9, 7.9)

    def __post_init__(self):
        if self.tokenization not in TOKENIZATIONS:
            msg = f"tokenization must be one of {TOKENIZATIONS}, got {self.tokenization!r}"
            raise ValueError(msg)
        if self.order not in ORDERS:
            msg = f"order must be one of {ORDERS}, got {self.order!r}"
            raise ValueError(msg)
        if self.fitted_hottest_cell and self.order != "energy":
            msg = "fitted_hottest_cell needs order='energy', where the first hit is the hottest cell"
            raise ValueError(msg)
        if self.energy_budget and not self.condition_on_n_hits:
            msg = "energy_budget needs condition_on_n_hits: the budget is shared among the hits still to place"
            raise ValueError(msg)
        if self.largest_of_hits_left and not (
            self.order == "energy" and self.condition_on_n_hits and self.bounded_by_previous
        ):
            msg = (
                "largest_of_hits_left needs order='energy', condition_on_n_hits and bounded_by_previous: "
                "each hit is then the largest of the hits still to place, below the one before"
            )
            raise ValueError(msg)
        if self.anchor_noise < 0:
            msg = f"anchor_noise must be >= 0, got {self.anchor_noise}"
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

    @property
    def blocks(self) -> GPTConfig:
        """The backbone's settings (its token vocabulary is not used: hits are embedded directly)."""
        return GPTConfig(
            codebook_size=1, embed_dim=self.embed_dim, n_heads=self.n_heads, n_blocks=self.n_blocks,
            ffn_dim=self.ffn_dim, max_length=self.max_hits + 1,
        )  # fmt: skip

    @property
    def draws_visible_energy(self) -> bool:
        """Whether generation needs each shower's visible energy (an energy budget, or a rescale to it)."""
        return self.energy_budget or self.rescale_to_visible_energy

    @property
    def n_conditions(self) -> int:
        return 2 if self.condition_on_n_hits else 1


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class HitSequences:
    """Showers as the direct model reads them: integer voxels and log energies, in sequence order."""

    voxels: np.ndarray  # (N, L, 3) int64: x, y, z cell indices; 0 where padded
    log_energy: np.ndarray  # (N, L) float32: log(E / MeV) + shift; 0 where padded
    mask: np.ndarray  # (N, L) bool
    incident_energy: np.ndarray  # (N,) float32 [GeV]

    def __len__(self) -> int:
        return len(self.voxels)

    @property
    def n_hits(self) -> np.ndarray:
        return self.mask.sum(axis=1)


def hit_sequences(
    showers: Showers, *, order: str = "energy", max_hits: int = 1700, log_energy_shift: float = 1.0
) -> HitSequences:
    """Showers on the grid -> :class:`HitSequences` ordered by ``order`` (see :data:`ORDERS`).

    Coordinates must be whole cell indices (simulated or voxelised showers).  A shower
    with more than ``max_hits`` hits is an error rather than silently cut.
    """
    if order not in ORDERS:
        msg = f"order must be one of {ORDERS}, got {order!r}"
        raise ValueError(msg)
    check_showers(showers, source="showers for the direct model")
    coordinates = showers.hits[..., :3][showers.mask]
    if not np.array_equal(coordinates, np.round(coordinates)):
        msg = "hit coordinates must be whole cell indices; voxelise generated or reconstructed showers first"
        raise BadDataError(msg)
    too_many = showers.n_hits > max_hits
    if too_many.any():
        msg = f"{too_many.sum()} shower(s) have more than max_hits = {max_hits} hits (most: {showers.n_hits.max()})"
        raise BadDataError(msg)
    energy = showers.energy
    if order == "energy":
        ranks = np.argsort(-energy, axis=1, kind="stable")
    else:  # padding (E = 0) last, then layer ascending, then energy falling
        ranks = np.lexsort((-energy, showers.z, ~showers.mask), axis=1)
    width = max(1, int(showers.n_hits.max()))  # <= max_hits, checked above
    hits = np.take_along_axis(showers.hits, ranks[..., None], axis=1)[:, :width]
    mask = hits[..., 3] > 0
    voxels = np.where(mask[..., None], hits[..., :3], 0).astype(np.int64)
    log_energy = np.where(mask, np.log(np.where(mask, hits[..., 3], 1.0)) + log_energy_shift, 0.0).astype(np.float32)
    return HitSequences(voxels, log_energy, mask, showers.incident_energy.astype(np.float32))


def visible_energy(hits: HitSequences, config: SpatialGPTConfig) -> np.ndarray:
    """(N,) each shower's visible energy, the sum of its hit energies [MeV]."""
    energy = np.exp(hits.log_energy.astype(np.float64) - config.log_energy_shift)
    return np.where(hits.mask, energy, 0.0).sum(axis=1)


def check_order(hits: HitSequences, order: str, *, source: str = "hits") -> None:
    """Raise :class:`BadDataError` unless ``hits`` are in ``order`` (as :func:`hit_sequences` makes them)."""
    both = hits.mask[:, 1:]  # a hit and its predecessor
    falling = hits.log_energy[:, 1:] <= hits.log_energy[:, :-1]
    if order == "energy":
        ok = falling | ~both
    else:
        z = hits.voxels[..., 2]
        ok = (z[:, 1:] > z[:, :-1]) | ((z[:, 1:] == z[:, :-1]) & falling) | ~both
    if not ok.all():
        msg = f"{source} are not ordered by {order}: make them with hit_sequences(showers, order={order!r})"
        raise BadDataError(msg)


def showers_from_hits(hits: HitSequences, *, log_energy_shift: float = 1.0) -> Showers:
    """The inverse of :func:`hit_sequences` (hits stay in sequence order)."""
    energy = np.where(hits.mask, np.exp(hits.log_energy.astype(np.float64) - log_energy_shift), 0.0)
    energy = np.where(hits.mask, np.maximum(energy, np.finfo(np.float32).tiny), 0.0)
    values = np.concatenate([hits.voxels.astype(np.float64), energy[..., None]], axis=-1)
    values[~hits.mask] = 0.0
    return Showers(values.astype(np.float32), hits.incident_energy.astype(np.float32))


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


# ----------------------------------------------------------------------------- fitted per-shower quantities


@dataclass(frozen=True)
class LogNormalInEnergy:
    """log(value) ~ Normal(mean(log E), width(log E)), polynomials fitted to simulated showers.

    A per-shower quantity (the number of hits, the hottest cell's energy) at incident
    energy E; a direct model draws it from here rather than learning it from one example per shower.
    """

    mean_coefficients: tuple[float, ...]  # numpy.polyval order, in x = log(E / 30 GeV)
    width_coefficients: tuple[float, ...]

    @classmethod
    def fit(cls, incident_energy, values, *, degree: int = LOG_NORMAL_DEGREE):
        x = np.log(np.asarray(incident_energy, dtype=np.float64) / REFERENCE_INCIDENT_GEV)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log(np.asarray(values, dtype=np.float64))
        if len(x) <= 2 * degree + 1 or not np.isfinite(y).all():
            msg = f"fitting {cls.__name__} needs more than {2 * degree + 1} showers, each with a value > 0"
            raise BadDataError(msg)
        mean = np.polyfit(x, y, degree)
        # E|r| = width * sqrt(2 / pi) for a Gaussian residual r: a fit of |r| gives the width.
        width_degree = min(degree, LOG_NORMAL_WIDTH_DEGREE)
        width = np.polyfit(x, np.abs(y - np.polyval(mean, x)) * math.sqrt(math.pi / 2), width_degree)
        width = np.concatenate([np.zeros(degree - width_degree), width])  # stored as long as the mean's
        return cls(tuple(mean.tolist()), tuple(width.tolist()))

    def mean_and_width(self, incident_energy) -> tuple[np.ndarray, np.ndarray]:
        """Mean and width of log(value) at each incident energy [GeV]."""
        x = np.log(np.asarray(incident_energy, dtype=np.float64) / REFERENCE_INCIDENT_GEV)
        return np.polyval(self.mean_coefficients, x), np.maximum(np.polyval(self.width_coefficients, x), 0.0)

    def as_tensor(self) -> Tensor:
        """Mean, then width coefficients: how a model stores the fit with its weights."""
        return torch.as_tensor(np.concatenate([self.mean_coefficients, self.width_coefficients]), dtype=torch.float64)

    @classmethod
    def from_tensor(cls, values: Tensor):
        mean, width = values.cpu().numpy().reshape(2, -1).tolist()
        return cls(tuple(mean), tuple(width))

    def sample(self, incident_energy, *, rng: np.random.Generator) -> np.ndarray:
        """One value per incident energy [GeV]."""
        mean, width = self.mean_and_width(incident_energy)
        return np.exp(rng.normal(mean, width))

    def standardised(self, incident_energy, values) -> np.ndarray:
        """How many widths log(value) lies above its mean at each incident energy [GeV]."""
        mean, width = self.mean_and_width(incident_energy)
        return (np.log(np.asarray(values, dtype=np.float64)) - mean) / np.maximum(width, 1e-9)

    def at(self, incident_energy, standardised) -> np.ndarray:
        """The value whose log lies ``standardised`` widths above its mean (the inverse of :meth:`standardised`)."""
        mean, width = self.mean_and_width(incident_energy)
        return np.exp(mean + width * np.asarray(standardised, dtype=np.float64))


class HitCountModel(LogNormalInEnergy):
    """The number of hits a shower of incident energy E has (:class:`LogNormalInEnergy`)."""

    def sample(self, incident_energy, *, max_hits: int, rng: np.random.Generator) -> np.ndarray:
        """One number of hits (int64, 1..max_hits) per incident energy [GeV]."""
        return as_hit_count(super().sample(incident_energy, rng=rng), max_hits)


def as_hit_count(values, max_hits: int) -> np.ndarray:
    """Drawn hit counts, rounded into 1..max_hits (int64)."""
    return np.clip(np.rint(values), 1, max_hits).astype(np.int64)


# Per-shower quantities a model draws from log-normals fitted to its training showers, when asked for an energy:
# name -> (the fit's class, the config option that makes the model use it).
FITTED_QUANTITIES = {
    "hit_count": (HitCountModel, "condition_on_n_hits"),
    "hottest_cell": (LogNormalInEnergy, "fitted_hottest_cell"),  # its energy [MeV]
    "visible_energy": (LogNormalInEnergy, "draws_visible_energy"),  # [MeV]
}


def per_shower_quantities(hits: HitSequences, config: SpatialGPTConfig) -> dict[str, np.ndarray]:
    """The values, one per shower, of the :data:`FITTED_QUANTITIES` a model of ``config`` uses."""
    values = {
        "hit_count": lambda: hits.n_hits,
        # in energy order (the only one with fitted_hottest_cell) the first hit is the hottest cell
        "hottest_cell": lambda: np.exp(hits.log_energy[:, 0].astype(np.float64) - config.log_energy_shift),
        "visible_energy": lambda: visible_energy(hits, config),
    }
    return {quantity: value() for quantity, value in values.items() if getattr(config, FITTED_QUANTITIES[quantity][1])}


# ----------------------------------------------------------------------------- the energy head


def mixture_parameters(raw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Head output (..., 3K) -> log weights (normalised), means, log widths, each (..., K)."""
    logits, mean, log_sigma = raw.chunk(3, dim=-1)
    return logits.log_softmax(dim=-1), mean, log_sigma.clamp(*LOG_SIGMA_RANGE)


def _log_cdf_below(upper: Tensor, mean: Tensor, log_sigma: Tensor) -> Tensor:
    """(..., K) log P(y <= upper) of each component; 0 where ``upper`` (...) is +inf (no bound)."""
    bounded = torch.isfinite(upper).unsqueeze(-1)
    z = (torch.where(torch.isfinite(upper), upper, 0.0).unsqueeze(-1) - mean) * torch.exp(-log_sigma)
    return torch.where(bounded, torch.special.log_ndtr(z), 0.0)  # no inf * 0 in the gradient where unbounded


def _log_mixture_cdf(y: Tensor, log_weight: Tensor, mean: Tensor, log_sigma: Tensor) -> Tensor:
    """(...) log P(Y <= y) under the mixture; 0 where ``y`` is +inf."""
    return torch.logsumexp(log_weight + _log_cdf_below(y, mean, log_sigma), dim=-1)


def mixture_nll(raw: Tensor, y: Tensor, upper: Tensor | None = None, largest_of: Tensor | None = None) -> Tensor:
    """Negative log-likelihood of ``y`` (...) under the mixture given by ``raw`` (..., 3K).

    With ``upper`` (..., +inf where unbounded) the mixture is cut there and renormalised:
    the density of y given y <= upper.  With ``largest_of`` (...) = n, y is the largest of n
    independent draws from that (cut) mixture: density n g(y) G(y)^(n-1) / G(upper)^n.
    """
    log_weight, mean, log_sigma = mixture_parameters(raw)
    z = (y.unsqueeze(-1) - mean) * torch.exp(-log_sigma)
    log_normal = -0.5 * z.square() - log_sigma - 0.5 * math.log(2 * math.pi)
    log_density = torch.logsumexp(log_weight + log_normal, dim=-1)
    log_below = 0.0 if upper is None else _log_mixture_cdf(upper, log_weight, mean, log_sigma)
    if largest_of is None:
        return log_below - log_density
    n = largest_of.to(log_density.dtype)
    log_cdf = _log_mixture_cdf(y, log_weight, mean, log_sigma)
    return n * log_below - (torch.log(n) + log_density + (n - 1) * log_cdf)


def sample_mixture(
    raw: Tensor,
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    upper: Tensor | None = None,
    largest_of: Tensor | None = None,
) -> Tensor:
    """One value per row of ``raw`` (B, 3K): a component by its weight, then a Gaussian draw.

    ``temperature`` scales the widths (1: the learned density; < 1 sharper).  With
    ``upper`` (B,), +inf where unbounded, the draw comes from the mixture cut there:
    a component by its weight times its mass below, then its Gaussian cut there
    (by the inverse CDF, in float64 where the device has it, so that far tails stay finite).
    With ``largest_of`` (B,) = n, the largest of n such draws: the mixture's CDF, cut at
    ``upper``, inverted at u^(1/n) by bisection.
    """
    if temperature <= 0:
        msg = f"energy temperature must be > 0, got {temperature}"
        raise ValueError(msg)
    dtype = torch.float32 if raw.device.type == "mps" else torch.float64  # MPS has no float64
    log_weight, mean, log_sigma = mixture_parameters(raw.to(dtype))
    log_sigma = log_sigma + math.log(temperature)
    if upper is None:
        upper = torch.full((len(raw),), math.inf, device=raw.device)
    upper = upper.to(dtype)
    if largest_of is not None:
        u = torch.rand(len(raw), generator=generator, device=raw.device, dtype=dtype)
        # log G(y) = log G(upper) + log(u) / n, solved for y between far below every component and the bound
        target = _log_mixture_cdf(upper, log_weight, mean, log_sigma) + torch.log(u) / largest_of.to(dtype)
        sigma = torch.exp(log_sigma)
        low, high = (mean - 40 * sigma).min(dim=-1).values, (mean + 40 * sigma).max(dim=-1).values
        high = torch.minimum(high, upper)
        low = torch.minimum(low, high)
        inverse_sigma = 1 / sigma
        # 40 halvings take the 80-width bracket below 1e-10 widths: past the float32 the energies are kept in
        for _ in range(40):
            middle = 0.5 * (low + high)  # always finite: the lean CDF, no bound handling
            log_cdf = torch.logsumexp(log_weight + torch.special.log_ndtr((middle[:, None] - mean) * inverse_sigma), -1)
            below = log_cdf < target
            low, high = torch.where(below, middle, low), torch.where(below, high, middle)
        return torch.minimum(0.5 * (low + high), upper).float()
    log_below = _log_cdf_below(upper, mean, log_sigma)  # (B, K)
    component = sample_categorical(log_weight + log_below, generator=generator)[:, None]
    mean, sigma = mean.gather(1, component).squeeze(1), torch.exp(log_sigma.gather(1, component).squeeze(1))
    u = torch.rand(len(raw), generator=generator, device=raw.device, dtype=dtype)
    # A uniform draw below the component's CDF at the bound, mapped back: exactly the cut Gaussian.
    y = mean + sigma * torch.special.ndtri(u * torch.exp(log_below.gather(1, component).squeeze(1)))
    # u * CDF = 0 (a CDF that underflowed, far below the mean): the cut Gaussian sits at its bound.
    y = torch.where(torch.isfinite(y), y, torch.where(torch.isfinite(upper), upper, mean))
    return torch.minimum(y, upper).float()


# ----------------------------------------------------------------------------- the model


class ClassHead(nn.Module):
    """Hidden states -> class logits (``.linear`` as :func:`chunked_cross_entropy` expects)."""

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.linear(hidden)


class SpatialGPT(nn.Module):
    def __init__(self, config: SpatialGPTConfig = SpatialGPTConfig()):
        super().__init__()
        self.config = config
        dim = config.embed_dim
        if config.tokenization == "joint":
            self.voxel_in = nn.Embedding(N_VOXELS, dim)
            self.voxel_head = ClassHead(dim, N_VOXELS + 1)  # the last class is STOP
            self.voxel_out = nn.Embedding(N_VOXELS, dim)  # the chosen voxel, for the energy head
        else:
            self.axis_in = nn.ModuleList(nn.Embedding(GRID_SIZE, dim) for _ in range(3))  # x, y, z
            self.axis_project = nn.Linear(3 * dim, dim)
            self.z_head = ClassHead(dim, GRID_SIZE + 1)  # layers and STOP
            self.x_head = ClassHead(dim, GRID_SIZE)
            self.y_head = ClassHead(dim, GRID_SIZE)
            self.axis_out = nn.ModuleList(nn.Embedding(GRID_SIZE, dim) for _ in range(3))  # z, x, y as predicted
        self.energy_in = nn.Linear(1, dim)
        self.start = nn.Parameter(0.02 * torch.randn(dim))
        self.condition_in = nn.Linear(config.n_conditions, dim)
        if config.condition_on_n_hits:
            self.placed_in = nn.Linear(1, dim)  # the fraction of the asked hits placed so far
        self.blocks = nn.ModuleList(Block(config.blocks, i) for i in range(config.n_blocks))
        self.energy_head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 3 * config.n_components))
        # Lowest and highest log energy of the training hits, in the model's units (see energy_offset): sampled
        # energies stay inside.  A few draws from a wide component's tail beyond every training hit would
        # otherwise carry much of a shower's energy sum.  Unbounded until fit_spatial_gpt sets it.
        self.register_buffer("trained_energy_range", torch.tensor([-math.inf, math.inf]))
        if config.energy_budget:
            self.budget_in = nn.Linear(4, dim)  # budget_features, the bound, whether there is one
        # The log-normals fitted to the training showers (mean, then width coefficients), saved with the weights.
        for quantity, (_, option) in FITTED_QUANTITIES.items():
            if getattr(config, option):
                coefficients = torch.zeros(2 * (LOG_NORMAL_DEGREE + 1), dtype=torch.float64)
                self.register_buffer(f"{quantity}_coefficients", coefficients)
        if config.condition_on_n_hits and config.draws_visible_energy:  # drawn together (see draw_shower_sizes)
            self.register_buffer("shower_size_correlation", torch.zeros((), dtype=torch.float64))

    @property
    def stop_class(self) -> int:
        return N_VOXELS if self.config.tokenization == "joint" else GRID_SIZE

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def embed_hits(self, voxels: Tensor, log_energy: Tensor) -> Tensor:
        """(..., 3) voxels and (...) log energies -> (..., D)."""
        if self.config.tokenization == "joint":
            position = self.voxel_in(flat_voxel(voxels))
        else:
            position = self.axis_project(torch.cat([emb(voxels[..., i]) for i, emb in enumerate(self.axis_in)], -1))
        return position + self.energy_in(log_energy.unsqueeze(-1))

    def fitted(self, quantity: str) -> LogNormalInEnergy | None:
        """The log-normal fitted for ``quantity`` (see :data:`FITTED_QUANTITIES`), or None if the model has none."""
        kind, option = FITTED_QUANTITIES[quantity]
        return kind.from_tensor(getattr(self, f"{quantity}_coefficients")) if getattr(self.config, option) else None

    def set_fitted(self, quantity: str, fit: LogNormalInEnergy) -> None:
        getattr(self, f"{quantity}_coefficients").copy_(fit.as_tensor())

    def sample_hottest_cell(self, condition: Tensor, *, temperature: float, generator) -> Tensor:
        """(B,) log energies (``log(E / MeV) + shift``) of the hottest cell, from the fitted log-normal."""
        incident = REFERENCE_INCIDENT_GEV * torch.exp(condition[:, 0].double()).cpu().numpy()  # GeV
        mean, width = (
            torch.as_tensor(a, dtype=torch.float32, device=condition.device)
            for a in self.fitted("hottest_cell").mean_and_width(incident)
        )
        noise = torch.randn(len(mean), generator=generator, device=condition.device)
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
            return hidden + self.voxel_out(flat_voxel(voxels))
        z, x, y = (self.axis_out[i](voxels[..., axis]) for i, axis in enumerate((2, 0, 1)))
        return hidden + z + x + y

    def budget_features(self, placed: Tensor, visible: Tensor, hits_left: Tensor, condition: Tensor) -> Tensor:
        """What the energy head of an ``energy_budget`` model reads about the shower's energy: (B, ..., 2).

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
        lies.  Successive energies in the dense low-energy part of a shower differ by
        ~0.1-1 %, finer than the head can read its predecessor's energy off the hidden
        state; placed in absolute terms, the means land above the bound and the cut
        draws stick to it, so generated energies stop falling.

        With ``energy_budget`` the head also reads its bound and ``budget`` (..., 2), the
        :meth:`budget_features`, exactly rather than through the blocks.
        """
        head_input = self.voxel_condition(hidden, voxels)
        bounded = torch.isfinite(upper)
        anchor = torch.where(bounded, upper, 0.0).to(hidden.dtype)
        if self.training and self.config.anchor_noise > 0:
            anchor = anchor + self.config.anchor_noise * torch.randn_like(anchor) * bounded
        if self.config.energy_budget:
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
        +inf before the first hit: the bounds of a model ``bounded_by_previous``;
        ``budget`` (B, 2) the :meth:`budget_features`, for a model with ``energy_budget``;
        ``hits_left`` (B,) the hits still to place, this one included, for ``largest_of_hits_left``.
        """
        if self.config.tokenization == "joint":
            logits = self.voxel_head(hidden)
            if not allow_stop:
                logits[:, N_VOXELS] = -math.inf
            choice = sample_categorical(logits, temperature=temperature, generator=generator)
            stop = choice == N_VOXELS
            voxels = unflat_voxel(choice.clamp(max=N_VOXELS - 1))
        else:
            logits = self.z_head(hidden)
            if not allow_stop:
                logits[:, GRID_SIZE] = -math.inf
            z = sample_categorical(logits, temperature=temperature, generator=generator)
            stop = z == GRID_SIZE
            z = z.clamp(max=GRID_SIZE - 1)
            h = hidden + self.axis_out[0](z)
            x = sample_categorical(self.x_head(h), temperature=temperature, generator=generator)
            h = h + self.axis_out[1](x)
            y = sample_categorical(self.y_head(h), temperature=temperature, generator=generator)
            voxels = torch.stack([x, y, z], dim=-1)
        upper = upper_bounds(self.config, voxels[:, 2], *previous)
        raw = self.energy_mixture(hidden, voxels, upper, budget)
        largest_of = hits_left if self.config.largest_of_hits_left else None
        log_energy = sample_mixture(
            raw, temperature=energy_temperature, generator=generator, upper=upper, largest_of=largest_of
        )
        log_energy = log_energy.clamp(*self.trained_energy_range) + self.energy_offset(condition)
        first = previous[0] < 0  # no hit before
        if self.config.fitted_hottest_cell and first.any():
            hottest = self.sample_hottest_cell(condition, temperature=energy_temperature, generator=generator)
            log_energy = torch.where(first, hottest, log_energy)
        return voxels, log_energy.clamp(*self.config.log_energy_range), stop


def flat_voxel(voxels: Tensor) -> Tensor:
    """(..., 3) x, y, z -> (...) index (x * 30 + y) * 30 + z."""
    return (voxels[..., 0] * GRID_SIZE + voxels[..., 1]) * GRID_SIZE + voxels[..., 2]


def unflat_voxel(index: Tensor) -> Tensor:
    return torch.stack([index // GRID_SIZE**2, index // GRID_SIZE % GRID_SIZE, index % GRID_SIZE], dim=-1)


def upper_bounds(config: SpatialGPTConfig, layer: Tensor, previous_layer: Tensor, previous_energy: Tensor) -> Tensor:
    """Each hit's upper energy bound (model units) from its predecessor: +inf where there is none.

    ``previous_energy`` is +inf before the first hit.  Energy order: always the previous hit's
    energy; layer order: only within the previous hit's layer.  +inf everywhere unless
    ``config.bounded_by_previous``.
    """
    if not config.bounded_by_previous:
        return torch.full_like(previous_energy, math.inf)
    if config.order == "energy":
        return previous_energy
    return torch.where(layer == previous_layer, previous_energy, math.inf)


def spatial_loss(model: SpatialGPT, batch: tuple[Tensor, ...]) -> StepOutput:
    """Cross-entropy of the next voxel (or STOP) plus the energy head's NLL, each a mean over its targets.

    ``batch`` = (voxels (B, L, 3), log_energy (B, L), mask (B, L), condition (B, C)); the
    batch is cut to its longest shower first.
    """
    voxels, log_energy, mask, condition = batch
    longest = max(1, int(mask.sum(dim=1).max()))
    voxels, log_energy, mask = voxels[:, :longest], log_energy[:, :longest], mask[:, :longest]
    hidden = model.hidden_states(voxels, log_energy, condition)  # (B, L + 1, D): hit j is predicted at j
    # Targets: every hit, and STOP right after each shower's last hit.
    stop_at = torch.zeros(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    stop_at[torch.arange(len(mask), device=hidden.device), mask.sum(dim=1)] = True
    hit_hidden, stop_hidden = hidden[:, :-1][mask], hidden[stop_at]
    target = voxels[mask]  # (n, 3)
    stop = torch.full((len(stop_hidden),), model.stop_class, dtype=torch.long, device=hidden.device)
    if model.config.tokenization == "joint":
        classes = torch.cat([flat_voxel(target), stop])
        ce, correct = chunked_cross_entropy(model.voxel_head, torch.cat([hit_hidden, stop_hidden]), classes)
        n_class = len(classes)
    else:
        ce, correct = chunked_cross_entropy(
            model.z_head, torch.cat([hit_hidden, stop_hidden]), torch.cat([target[:, 2], stop])
        )
        h = hit_hidden + model.axis_out[0](target[:, 2])
        ce_x, correct_x = chunked_cross_entropy(model.x_head, h, target[:, 0])
        h = h + model.axis_out[1](target[:, 0])
        ce_y, correct_y = chunked_cross_entropy(model.y_head, h, target[:, 1])
        ce, n_class = ce + ce_x + ce_y, len(target) + len(stop)  # summed over the axes, per hit
    energy = log_energy - model.energy_offset(condition)[:, None]  # in the model's units
    previous_energy = torch.cat([torch.full_like(energy[:, :1], math.inf), energy[:, :-1]], dim=1)
    previous_layer = torch.cat([torch.full_like(voxels[:, :1, 2], -1), voxels[:, :-1, 2]], dim=1)
    upper = upper_bounds(model.config, voxels[..., 2], previous_layer, previous_energy)[mask]
    hits_left = mask.sum(dim=1, keepdim=True) - torch.arange(mask.shape[1], device=mask.device)  # this one included
    budget = None
    if model.config.energy_budget:
        hit_energy = torch.where(mask, torch.exp(log_energy - model.config.log_energy_shift), 0.0)  # MeV
        placed = hit_energy.cumsum(dim=1) - hit_energy  # the hits before
        budget = model.budget_features(placed, hit_energy.sum(dim=1), hits_left, condition)[mask]
    raw = model.energy_mixture(hit_hidden, target, upper, budget)
    largest_of = hits_left[mask] if model.config.largest_of_hits_left else None
    nll = mixture_nll(raw, energy[mask], upper=upper, largest_of=largest_of).sum()
    n_targets = len(target) + len(stop)
    voxel_loss, energy_loss = ce / n_targets, nll / max(1, len(target))
    return StepOutput(
        voxel_loss + energy_loss,
        {
            "voxel_ce": float(voxel_loss.detach()),
            "energy_nll": float(energy_loss.detach()),
            "first_class_accuracy": correct / n_class,
        },
    )


# ----------------------------------------------------------------------------- training, loading, generation


def _tensors(hits: HitSequences, config: SpatialGPTConfig) -> tuple[Tensor, ...]:
    condition = condition_features(hits.incident_energy, hits.n_hits, config=config)
    return (
        torch.as_tensor(hits.voxels, dtype=torch.long),
        torch.as_tensor(hits.log_energy, dtype=torch.float32),
        torch.as_tensor(hits.mask),
        torch.as_tensor(condition),
    )


def fit_spatial_gpt(
    config: SpatialGPTConfig,
    train_hits: HitSequences,
    val_hits: HitSequences,
    training: TrainingConfig,
    run_dir: str | os.PathLike,
    *,
    progress: bool = True,
) -> tuple[SpatialGPT, TrainingResult]:
    """Train a direct model with the shared loop (resumable); returns the best-validation model and the result."""
    for name, hits in (("train", train_hits), ("validation", val_hits)):
        if len(hits) == 0 or hits.voxels.shape[1] > config.max_hits:
            msg = f"{name} showers: need at least one, each of at most max_hits = {config.max_hits} hits"
            raise ValueError(msg)
        check_order(hits, config.order, source=f"{name} showers")
    torch.manual_seed(training.seed)
    model = SpatialGPT(config)
    quantities = per_shower_quantities(train_hits, config)
    for quantity, values in quantities.items():  # for generation at an asked energy
        model.set_fitted(quantity, FITTED_QUANTITIES[quantity][0].fit(train_hits.incident_energy, values))
    if hasattr(model, "shower_size_correlation"):
        residuals = [model.fitted(q).standardised(train_hits.incident_energy, quantities[q]) for q in SHOWER_SIZES]
        model.shower_size_correlation.fill_(float(np.corrcoef(residuals)[0, 1]))
    train_data, val_data = _tensors(train_hits, config), _tensors(val_hits, config)
    _, log_energy, mask, condition = train_data
    with torch.no_grad():
        energy = (log_energy - model.energy_offset(condition)[:, None])[mask]
        model.trained_energy_range.copy_(torch.stack([energy.min(), energy.max()]))
    order = val_data[2].sum(dim=1).argsort(stable=True)  # validation batches of similar lengths
    val_data = tuple(t[order] for t in val_data)
    result = train(
        model, train_data, val_data, spatial_loss, training, run_dir,
        describe={"model": "SpatialGPT", "spatial_config": asdict(config)}, progress=progress,
        lengths=train_data[2].sum(dim=1),
    )  # fmt: skip
    return load_spatial_gpt(result.best_checkpoint, device=training.device), result


def load_spatial_gpt(path: str | os.PathLike, *, device: str = "auto") -> SpatialGPT:
    """A direct model from any checkpoint :func:`fit_spatial_gpt` wrote, in eval mode."""
    checkpoint = load_checkpoint(path)
    describe = checkpoint.get("describe") or {}
    if "spatial_config" not in describe:
        msg = f"{path} is not a direct-spatial-token checkpoint (its description holds {sorted(describe)})"
        raise ValueError(msg)
    model = SpatialGPT(SpatialGPTConfig(**describe["spatial_config"]))
    state = dict(checkpoint["model"])
    if hasattr(model, "shower_size_correlation"):  # saved before the two were drawn together: independently
        state.setdefault("shower_size_correlation", torch.zeros((), dtype=torch.float64))
    model.load_state_dict(state)
    return model.to(pick_device(device)).eval()


@torch.inference_mode()
def generate_hits(
    model: SpatialGPT,
    incident_energy,
    *,
    n_hits=None,
    visible_energy=None,
    max_hits: int | None = None,
    temperature: float = 1.0,
    energy_temperature: float = 1.0,
    generator: torch.Generator | None = None,
    rescale: bool = True,
) -> HitSequences:
    """One shower per requested incident energy [GeV] (and number of hits, if the model takes it).

    Hit by hit with a key/value cache until STOP or ``max_hits``; showers that have
    stopped leave the batch, as in :func:`omnijet_lib.generation.generate_batch`.
    A model conditioned on the number of hits gives each shower exactly the hits asked for;
    one with ``energy_budget`` or ``rescale_to_visible_energy`` needs each shower's
    ``visible_energy`` [MeV] too.  ``rescale=False`` leaves the chain's own energy scale
    to a model with ``rescale_to_visible_energy`` (to see what the rescale does).
    """
    config = model.config
    max_hits = config.max_hits if max_hits is None else max_hits
    if not 1 <= max_hits <= config.max_hits:
        msg = f"max_hits must be in 1..{config.max_hits} (the model's), got {max_hits}"
        raise ValueError(msg)
    model.eval()
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    incident = np.asarray(incident_energy, dtype=np.float32).reshape(-1)
    batch = len(incident)
    condition = torch.as_tensor(condition_features(incident, n_hits, config=config), device=device)  # (B, C)
    if config.condition_on_n_hits:
        asked = model.asked_hits(condition).long()  # (B,) per output row
        if asked.max() > max_hits:
            msg = f"asked for showers of up to {int(asked.max())} hits, more than max_hits = {max_hits}"
            raise ValueError(msg)
    cache = KVCache(config.blocks, batch, device=device, dtype=dtype, max_length=max_hits + 1)
    voxels = torch.zeros((batch, max_hits, 3), dtype=torch.long, device=device)
    log_energy = torch.zeros((batch, max_hits), dtype=torch.float32, device=device)
    length = torch.zeros(batch, dtype=torch.long, device=device)
    previous_layer = torch.full((batch,), -1, dtype=torch.long, device=device)  # per cache row
    previous_energy = torch.full((batch,), math.inf, device=device)  # in the model's units; none yet
    placed = torch.zeros(batch, device=device)  # visible energy of the hits so far [MeV], per cache row
    if config.draws_visible_energy:
        if visible_energy is None:
            msg = "this model shares a visible energy among its hits: give visible_energy [MeV]"
            raise ValueError(msg)
        visible = torch.tensor(np.broadcast_to(visible_energy, (batch,)), dtype=torch.float32, device=device)
        if not (torch.isfinite(visible).all() and (visible > 0).all()):
            msg = "every visible energy asked for must be > 0 [MeV]"
            raise BadDataError(msg)
        asked_visible = visible  # per output row; `visible` follows the cache rows
    rows = torch.arange(batch, device=device)  # output row of each cache row
    live = torch.ones(batch, dtype=torch.bool, device=device)
    hidden = run_blocks(model.blocks, model.start_input(condition), cache, max_length=max_hits + 1)[:, -1]
    for position in range(max_hits):
        live_rows = live.nonzero().squeeze(1)
        hits_left = asked[rows[live_rows]] - length[rows[live_rows]] if config.condition_on_n_hits else None
        vox, energy, stop = model.sample_hit(
            hidden[live_rows], condition[live_rows], temperature=temperature, energy_temperature=energy_temperature,
            generator=generator, allow_stop=not config.condition_on_n_hits,
            previous=(previous_layer[live_rows], previous_energy[live_rows]),
            budget=None if not config.energy_budget else model.budget_features(
                placed[live_rows], visible[live_rows], hits_left, condition[live_rows],
            ),
            hits_left=hits_left,
        )  # fmt: skip
        previous_layer[live_rows] = vox[:, 2]
        previous_energy[live_rows] = energy - model.energy_offset(condition[live_rows])
        placed[live_rows] += torch.where(stop, 0.0, torch.exp(energy - config.log_energy_shift))
        kept = live_rows[~stop]
        voxels[rows[kept], position], log_energy[rows[kept], position] = vox[~stop], energy[~stop]
        length[rows[kept]] += 1
        if config.condition_on_n_hits:
            stop = length[rows[live_rows]] >= asked[rows[live_rows]]  # the asked hits are all placed
        live[live_rows[stop]] = False
        if not live.any() or position == max_hits - 1:
            break
        # Rows that stopped but still sit in the cache get a dummy hit; their output is never read.
        step_vox = torch.zeros((cache.batch_size, 3), dtype=torch.long, device=device)
        step_energy = torch.zeros(cache.batch_size, device=device)
        step_vox[live_rows], step_energy[live_rows] = vox, energy
        if (~live).sum() >= COMPACT_FRACTION * cache.batch_size:
            keep = live.nonzero().squeeze(1)
            cache.keep(keep)
            rows, live, step_vox, step_energy, condition = (
                rows[keep],
                live[keep],
                step_vox[keep],
                step_energy[keep],
                condition[keep],
            )
            previous_layer, previous_energy, placed = previous_layer[keep], previous_energy[keep], placed[keep]
            if config.draws_visible_energy:
                visible = visible[keep]
        step = model.hit_inputs(step_vox[:, None], step_energy[:, None], condition, first=position + 1)
        hidden = run_blocks(model.blocks, step, cache, max_length=max_hits + 1)[:, -1]
    mask = torch.arange(max_hits, device=device) < length[:, None]
    # One factor per shower: its hits then sum to the visible energy asked.
    if config.rescale_to_visible_energy and rescale:
        hit_sum = torch.where(mask, torch.exp(log_energy - config.log_energy_shift), 0.0).sum(dim=1)
        scale = torch.log(asked_visible) - torch.log(hit_sum.clamp(min=MIN_ENERGY_LEFT_MEV))
        log_energy = torch.where(mask, log_energy + scale[:, None], 0.0)
    width = max(1, int(length.max()))
    return HitSequences(
        voxels[:, :width].cpu().numpy(), log_energy[:, :width].cpu().numpy(), mask[:, :width].cpu().numpy(), incident
    )


SHOWER_SIZES = ("hit_count", "visible_energy")  # the fitted quantities drawn together


def draw_shower_sizes(
    model: SpatialGPT, incident_energy, *, n_hits=None, visible_energy=None, rng: np.random.Generator
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Each shower's number of hits and visible energy [MeV], where the model needs one and none is given.

    At a fixed incident energy the two rise and fall together (their logs correlate at
    0.90-0.96 in the simulated showers), so a model that uses both draws them from its
    two log-normals with the correlation of its training showers; one given sets where
    the other is drawn.  None for a quantity the model does not use and was not given.
    """
    incident = np.asarray(incident_energy, dtype=np.float64).reshape(-1)
    correlation = float(getattr(model, "shower_size_correlation", 0.0))
    fits = {q: model.fitted(q) for q in SHOWER_SIZES}
    values = {"hit_count": n_hits, "visible_energy": visible_energy}
    position = {}  # widths above the mean, of each quantity given or drawn
    for quantity in SHOWER_SIZES:
        if values[quantity] is not None:
            values[quantity] = np.broadcast_to(np.asarray(values[quantity]), incident.shape)
            if fits[quantity] is not None:
                position[quantity] = fits[quantity].standardised(incident, values[quantity])
    for quantity, other in zip(SHOWER_SIZES, SHOWER_SIZES[::-1]):
        if fits[quantity] is None or values[quantity] is not None:
            continue
        noise = rng.normal(size=incident.shape)
        if other in position:
            noise = correlation * position[other] + math.sqrt(1 - correlation**2) * noise
        position[quantity], values[quantity] = noise, fits[quantity].at(incident, noise)
        if quantity == "hit_count":
            values[quantity] = as_hit_count(values[quantity], model.config.max_hits)
    return values["hit_count"], values["visible_energy"]


def generate_showers(
    model: SpatialGPT,
    incident_energy,
    *,
    n_hits=None,
    visible_energy=None,
    batch_size: int = 64,
    temperature: float = 1.0,
    energy_temperature: float = 1.0,
    seed: int = 0,
    progress: bool = True,
    rescale: bool = True,
) -> tuple[Showers, np.ndarray]:
    """One shower per incident energy [GeV], in batches, put onto the grid; and which requests they answer.

    A shower that drew STOP before any hit is no shower: it is left out, and the
    returned indices (into ``incident_energy``) of the kept ones show how many were.
    A model conditioned on the number of hits draws it from its :class:`HitCountModel`
    unless ``n_hits`` is given, and one with ``energy_budget`` or ``rescale_to_visible_energy``
    the visible energy [MeV] from its fit likewise unless ``visible_energy`` is given
    (``rescale``: see :func:`generate_hits`).

    The model may place two hits in one voxel; :func:`voxelise` then moves one as
    for the VQ-VAE model's showers (energy and hit count kept).  The same seed,
    model, device and ``batch_size`` give the same showers.
    """
    incident = np.asarray(incident_energy, dtype=np.float32).reshape(-1)
    # one per shower (given ones broadcast), or None where the model needs none and none is given
    requested, visible = draw_shower_sizes(
        model, incident, n_hits=n_hits, visible_energy=visible_energy, rng=np.random.default_rng(seed)
    )
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    batches = []
    with tqdm(total=len(incident), desc="generating showers", unit="shower", disable=not progress) as bar:
        for start in range(0, len(incident), batch_size):
            part = slice(start, start + batch_size)
            hits = generate_hits(
                model, incident[part], n_hits=None if requested is None else requested[part],
                visible_energy=None if visible is None else visible[part],
                temperature=temperature, energy_temperature=energy_temperature, generator=generator,
                rescale=rescale,
            )  # fmt: skip
            batches.append(showers_from_hits(hits, log_energy_shift=model.config.log_energy_shift))
            bar.update(len(hits))
    showers = concatenate_showers(batches)
    kept = np.flatnonzero(showers.n_hits > 0)
    return voxelise(showers[kept]), kept
