"""The direct-token model's energy strategies: their names, what each needs, and the flags of older configs."""

from dataclasses import asdict

import pytest

from omnijet_lib.models.energy_strategies import (
    ADDITIONS,
    CHAINS,
    ENERGY_STRATEGIES,
    EnergyStrategy,
    strategy_from_flags,
)
from omnijet_lib.models.spatial_gpt import SpatialGPTConfig


def test_every_strategy_is_a_chain_and_its_additions_in_order():
    assert len(ENERGY_STRATEGIES) == len(set(ENERGY_STRATEGIES)) == len(CHAINS) * 2 ** len(ADDITIONS)
    for name in ENERGY_STRATEGIES:
        strategy = EnergyStrategy.parse(name)
        assert strategy.name == name and strategy.chain == name.split("+")[0]
        assert all(getattr(strategy, a) == (a in name.split("+")) for a in ADDITIONS)
    plain = EnergyStrategy.parse("free")
    assert not (plain.bounded or plain.largest_of_hits_left or plain.draws_visible_energy)
    order_statistic = EnergyStrategy.parse("largest_of_hits_left+energy_budget")
    assert order_statistic.bounded and order_statistic.largest_of_hits_left and order_statistic.draws_visible_energy
    for wrong in ("bounded_by_previous", "bounded+", "free+free", "energy_budget"):
        with pytest.raises(ValueError, match="energy_strategy must be a chain") as err:
            SpatialGPTConfig(energy_strategy=wrong)
        assert all(choice in str(err.value) for choice in (*CHAINS, *ADDITIONS))  # the choices, listed
    with pytest.raises(ValueError, match=r"write it as 'bounded\+energy_budget\+rescale_to_visible_energy'"):
        EnergyStrategy.parse("bounded+rescale_to_visible_energy+energy_budget")


@pytest.mark.parametrize(
    ("strategy", "settings", "problem"),
    [
        ("largest_of_hits_left", {"order": "layer", "condition_on_n_hits": True}, "largest_of_hits_left needs"),
        ("largest_of_hits_left", {"order": "energy"}, "largest_of_hits_left needs"),
        ("bounded+fitted_hottest_cell", {"order": "layer"}, "fitted_hottest_cell needs order='energy'"),
        ("bounded+energy_budget", {}, "energy_budget needs condition_on_n_hits"),
        ("free", {"anchor_noise": 0.1}, "anchor_noise blurs the bound"),
    ],
)
def test_a_strategy_the_model_cannot_use_is_refused(strategy, settings, problem):
    with pytest.raises(ValueError, match=problem):
        SpatialGPTConfig(energy_strategy=strategy, **settings)


def test_the_flags_of_older_configs_name_their_strategy():
    assert strategy_from_flags() == "free"
    assert strategy_from_flags(bounded_by_previous=True, fitted_hottest_cell=True) == "bounded+fitted_hottest_cell"
    assert (
        strategy_from_flags(
            bounded_by_previous=True,
            largest_of_hits_left=True,
            fitted_hottest_cell=True,
            rescale_to_visible_energy=True,
        )
        == "largest_of_hits_left+fitted_hottest_cell+rescale_to_visible_energy"
    )
    with pytest.raises(ValueError, match="never a valid model"):
        strategy_from_flags(largest_of_hits_left=True)
    new = asdict(SpatialGPTConfig(condition_on_n_hits=True, order="layer"))
    del new["energy_strategy"]
    flags = dict.fromkeys(("bounded_by_previous", "largest_of_hits_left", "fitted_hottest_cell"), False)
    old = {**new, **flags, "energy_budget": True, "rescale_to_visible_energy": True}
    assert SpatialGPTConfig.from_dict({**old, "bounded_by_previous": True, "anchor_noise": 0.05}) == SpatialGPTConfig(
        condition_on_n_hits=True, order="layer", energy_strategy="bounded+energy_budget+rescale_to_visible_energy",
        anchor_noise=0.05,
    )  # fmt: skip
    # without a bound, an anchor_noise did nothing: dropped rather than refused
    unbounded = SpatialGPTConfig.from_dict({**old, "anchor_noise": 0.05})
    assert unbounded.energy_strategy == "free+energy_budget+rescale_to_visible_energy" and unbounded.anchor_noise == 0
    assert SpatialGPTConfig.from_dict(asdict(unbounded)) == unbounded  # a new config reads back as it is
    with pytest.raises(ValueError, match="both an energy_strategy and the old flags"):
        SpatialGPTConfig.from_dict({**old, "energy_strategy": "free"})
