"""The energy head's mixture of Gaussians: its likelihood and its draws, cut at a bound or as an order statistic.

A hit's log energy ``y`` comes from a mixture of K Gaussians whose log weights,
means and log widths the head gives as one vector ``(..., 3K)``
(:func:`mixture_parameters`).  Two variants serve the direct-token model's
energy strategies (:mod:`omnijet_lib.models.energy_strategies`):

* cut at an upper bound (the previous hit's energy where the hit order makes it
  one) and renormalised: the density of y given y <= bound, so that no
  probability goes to energies the order forbids;
* the largest of n independent draws from that cut mixture -- the order
  statistic -- whose density is ``n g(y) G(y)^(n-1) / G(bound)^n`` with g the
  mixture's density and G its CDF.

:func:`mixture_nll` is the negative log-likelihood training minimises,
:func:`sample_mixture` draws at generation.  CDFs are kept in logs throughout,
so that draws and likelihoods far in a Gaussian's tail stay finite.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from omnijet_lib.models.sampling import sample_categorical

LOG_SIGMA_RANGE = (-7.0, 3.0)  # a component's log width is clamped here: no collapse onto one training value


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
