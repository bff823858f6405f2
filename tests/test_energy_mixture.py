"""The energy head's mixture of Gaussians: its likelihood and draws, plain, cut at a bound, and as an order statistic."""

import math

import numpy as np
import pytest
import torch

from omnijet_lib.models.energy_mixture import mixture_nll, sample_mixture


def test_mixture_nll_equals_a_direct_calculation():
    weights, means, sigmas = np.array([0.2, 0.5, 0.3]), np.array([-1.0, 0.5, 2.0]), np.array([0.3, 1.0, 0.1])
    raw = torch.tensor(np.concatenate([np.log(weights) + 7.0, means, np.log(sigmas)]), dtype=torch.float64)
    y = np.array([-1.2, 0.0, 1.95, 5.0])
    density = (weights * np.exp(-0.5 * ((y[:, None] - means) / sigmas) ** 2) / (sigmas * math.sqrt(2 * math.pi))).sum(1)
    nll = mixture_nll(raw.expand(len(y), -1), torch.tensor(y))
    np.testing.assert_allclose(nll.numpy(), -np.log(density), rtol=1e-10)


def test_sampling_a_known_mixture():
    weights, means, sigmas = np.array([0.25, 0.75]), np.array([-3.0, 2.0]), np.array([0.5, 0.2])
    raw = torch.tensor(np.concatenate([np.log(weights), means, np.log(sigmas)]), dtype=torch.float32)
    draws = sample_mixture(raw.expand(40_000, -1), generator=torch.Generator().manual_seed(0)).numpy()
    low, high = draws[draws < 0], draws[draws >= 0]
    assert len(low) / len(draws) == pytest.approx(0.25, abs=0.01)
    assert low.mean() == pytest.approx(-3.0, abs=0.02) and low.std() == pytest.approx(0.5, rel=0.03)
    assert high.mean() == pytest.approx(2.0, abs=0.01) and high.std() == pytest.approx(0.2, rel=0.03)
    sharp = sample_mixture(raw.expand(40_000, -1), temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert sharp[sharp >= 0].std() == pytest.approx(0.1, rel=0.03)  # temperature scales the widths
    with pytest.raises(ValueError, match="temperature"):
        sample_mixture(raw[None], temperature=0.0)


def normal_cdf(x):
    return 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def test_a_bounded_mixture_is_the_mixture_cut_and_renormalised():
    weights, means, sigmas = np.array([0.2, 0.5, 0.3]), np.array([-1.0, 0.5, 2.0]), np.array([0.3, 1.0, 0.1])
    raw = torch.tensor(
        np.concatenate([np.log(weights), means, np.log(sigmas)]), dtype=torch.float64, requires_grad=True
    )
    y, upper = np.array([-1.2, 0.0, 1.95, -30.0]), np.array([0.0, 0.5, np.inf, -20.0])
    density = (weights * np.exp(-0.5 * ((y[:, None] - means) / sigmas) ** 2) / (sigmas * math.sqrt(2 * math.pi))).sum(1)
    below = (weights * normal_cdf((np.where(np.isinf(upper), 50.0, upper)[:, None] - means) / sigmas)).sum(1)
    nll = mixture_nll(raw.expand(len(y), -1), torch.tensor(y), upper=torch.tensor(upper))
    # the last row lies 29 widths below the mean of its nearest Gaussian: only logs keep it finite
    np.testing.assert_allclose(nll[:3].detach().numpy(), -np.log(density[:3] / below[:3]), rtol=1e-10)
    assert torch.isfinite(nll[3])
    nll.sum().backward()  # rows without a bound (+inf) leave the gradient finite
    assert torch.isfinite(raw.grad).all()


def test_sampling_a_bounded_mixture():
    weights, means, sigmas = np.array([0.25, 0.75]), np.array([-3.0, 2.0]), np.array([0.5, 0.2])
    raw = torch.tensor(np.concatenate([np.log(weights), means, np.log(sigmas)]), dtype=torch.float32)
    n, upper = 40_000, 2.0  # the bound cuts the second Gaussian at its mean
    draws = sample_mixture(raw.expand(n, -1), upper=torch.full((n,), upper), generator=torch.Generator().manual_seed(0))
    draws = draws.numpy()
    assert draws.max() <= upper
    low, high = draws[draws < 0], draws[draws >= 0]
    assert len(low) / n == pytest.approx(0.25 / (0.25 + 0.75 * 0.5), abs=0.01)  # weight times mass below
    assert high.mean() == pytest.approx(2.0 - 0.2 * math.sqrt(2 / math.pi), abs=0.005)  # a half-normal's mean
    assert low.std() == pytest.approx(0.5, rel=0.03)  # the first is hardly cut
    far = sample_mixture(raw[None].expand(10, -1), upper=torch.full((10,), -40.0), generator=torch.Generator())
    assert torch.isfinite(far).all() and far.max() <= -40.0  # a bound far in the tail still gives draws below it


def mixture_cdf(y, weights, means, sigmas):
    return (weights * normal_cdf((np.asarray(y, dtype=float)[:, None] - means) / sigmas)).sum(1)


def test_the_largest_of_n_draws_has_the_order_statistic_density():
    weights, means, sigmas = np.array([0.2, 0.5, 0.3]), np.array([-1.0, 0.5, 2.0]), np.array([0.3, 1.0, 0.1])
    raw = torch.tensor(
        np.concatenate([np.log(weights), means, np.log(sigmas)]), dtype=torch.float64, requires_grad=True
    )
    y, upper, n = np.array([-1.2, 0.0, 1.95, 0.3]), np.array([0.0, 0.5, np.inf, 0.4]), np.array([1, 40, 7, 1500])
    density = (weights * np.exp(-0.5 * ((y[:, None] - means) / sigmas) ** 2) / (sigmas * math.sqrt(2 * math.pi))).sum(1)
    below = mixture_cdf(np.where(np.isinf(upper), 50.0, upper), weights, means, sigmas)
    log_cdf = np.log(mixture_cdf(y, weights, means, sigmas))  # in logs: G^1499 underflows
    expected = -(np.log(n) + np.log(density) + (n - 1) * log_cdf - n * np.log(below))
    nll = mixture_nll(raw.expand(len(y), -1), torch.tensor(y), upper=torch.tensor(upper), largest_of=torch.tensor(n))
    np.testing.assert_allclose(nll.detach().numpy(), expected, rtol=1e-9)
    plain = mixture_nll(raw.expand(len(y), -1), torch.tensor(y), upper=torch.tensor(upper))
    np.testing.assert_allclose(nll[0].item(), plain[0].item())  # the largest of one draw is the draw
    nll.sum().backward()
    assert torch.isfinite(raw.grad).all()


def test_sampling_the_largest_of_n_draws():
    weights, means, sigmas = np.array([0.25, 0.75]), np.array([-3.0, 2.0]), np.array([0.5, 0.2])
    raw = torch.tensor(np.concatenate([np.log(weights), means, np.log(sigmas)]), dtype=torch.float32)
    rows, upper = 20_000, 2.1
    for n in (1, 30, 1000):
        draws = sample_mixture(
            raw.expand(rows, -1), upper=torch.full((rows,), upper), largest_of=torch.full((rows,), n),
            generator=torch.Generator().manual_seed(n),
        ).numpy()  # fmt: skip
        assert draws.max() <= upper
        # the empirical CDF against (G(y) / G(upper))^n at its quartiles
        cdf = (mixture_cdf(np.sort(draws), weights, means, sigmas) / mixture_cdf([upper], weights, means, sigmas)) ** n
        for q in (0.25, 0.5, 0.75):
            assert cdf[int(q * rows)] == pytest.approx(q, abs=0.015)
    free = sample_mixture(raw.expand(rows, -1), largest_of=torch.full((rows,), 1), generator=torch.Generator())
    assert (free < 0).float().mean().item() == pytest.approx(0.25, abs=0.01)  # unbounded, n = 1: the mixture
