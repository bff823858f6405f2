"""How the direct-token model draws a shower's chain of hit energies: one named strategy per model.

Hits come one after another (:mod:`omnijet_lib.models.spatial_gpt`), each with its
log energy from the energy head's mixture of Gaussians
(:mod:`omnijet_lib.models.energy_mixture`).  A strategy says how that chain of
energies is shaped and how it gets its scale.  Its name is a *chain*, then the
*additions* it uses, joined by ``+`` in the order of :data:`ADDITIONS`, e.g.
``"largest_of_hits_left+fitted_hottest_cell+rescale_to_visible_energy"``;
:data:`ENERGY_STRATEGIES` lists every name.

Chains -- the density of one hit's energy given the hits before:

* ``free``: the mixture as it is (the paper's model);
* ``bounded``: the mixture cut at the previous hit's energy wherever the hit order
  makes that an upper bound (every hit after the first in energy order; a hit in the
  same layer as the one before in layer order), and renormalised, in the likelihood
  and in sampling, so that no probability goes to energies the order forbids.  The
  component means are placed relative to the bound
  (:meth:`~omnijet_lib.models.spatial_gpt.SpatialGPT.energy_mixture`): the head
  predicts how far below its predecessor a hit lies.  Each draw bounds the next, so
  the first, unbounded hit sets the scale of all that follow, and an error travels
  down the rest of the chain; an energy temperature below 1 narrows every cut
  Gaussian towards its bound;
* ``largest_of_hits_left`` (energy order, the number of hits known): bounded, and the
  head gives the density of one hit among the n still to place; a hit's energy is
  drawn as their largest -- the order statistic, density ``n g G^(n-1) / G(bound)^n``.
  How far one energy lies below the next then follows from the spectrum of the hits
  left and their number, rather than from a small step the head has to get right
  at every hit.

Additions -- where the chain's scale comes from:

* ``fitted_hottest_cell`` (energy order): the first hit -- the hottest cell -- takes
  its energy from a log-normal in E_inc fitted to the training showers
  (:class:`~omnijet_lib.models.shower_sizes.LogNormalInEnergy`), not from the head,
  which learns it from one example per shower;
* ``energy_budget`` (the number of hits known): the energy head also reads, exactly,
  its bound and how much of the shower's visible energy the hits so far have used and
  what is left per hit still to place
  (:meth:`~omnijet_lib.models.spatial_gpt.SpatialGPT.budget_features`).  Trained on
  true showers, whose last hit takes exactly what is left, the head learns to spend
  the budget; a chain that runs high or low while generating sees it and is pulled back;
* ``rescale_to_visible_energy``: generation scales each shower's energies by one factor
  so that they sum to its visible energy -- as CaloClouds scales its point clouds to
  the energy its ShowerFlow draws.  The scale then comes from the fit, the shape of
  the shower from the GPT; training is unchanged.

The budget and the rescale both draw each shower's visible energy from a log-normal
in E_inc fitted to the training showers, or take it asked for.  A model's
``anchor_noise`` (training only) blurs the bound its means are placed from; it needs
a chain with a bound, and serves the energy budget: a head that cannot trust its
predecessor exactly learns to keep to the budget.

Checkpoints written before strategies had one flag per idea; :func:`strategy_from_flags`
names the strategy those flags made.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

CHAINS = ("free", "bounded", "largest_of_hits_left")
ADDITIONS = ("fitted_hottest_cell", "energy_budget", "rescale_to_visible_energy")  # in the order names list them
ENERGY_STRATEGIES = tuple(
    "+".join((chain, *(a for a, used in zip(ADDITIONS, uses) if used)))
    for chain in CHAINS
    for uses in product((False, True), repeat=len(ADDITIONS))
)
# The flags a model's config had before strategies (read from old checkpoints by strategy_from_flags).
OLD_FLAGS = ("bounded_by_previous", "largest_of_hits_left", *ADDITIONS)


@dataclass(frozen=True)
class EnergyStrategy:
    """A strategy's chain and additions (see the module docstring); :meth:`parse` reads its name."""

    chain: str = "free"
    fitted_hottest_cell: bool = False
    energy_budget: bool = False
    rescale_to_visible_energy: bool = False

    @classmethod
    def parse(cls, name: str) -> EnergyStrategy:
        if name not in ENERGY_STRATEGIES:
            parts = str(name).split("+")
            hint = ""
            if parts[0] in CHAINS and set(parts[1:]) <= set(ADDITIONS) and len(set(parts[1:])) == len(parts) - 1:
                hint = f" (write it as {'+'.join([parts[0], *(a for a in ADDITIONS if a in parts)])!r})"
            msg = (
                f"energy_strategy must be a chain {CHAINS}, then any of the additions {ADDITIONS} in this order, "
                f"joined by '+' (e.g. 'bounded+energy_budget'); got {name!r}{hint}"
            )
            raise ValueError(msg)
        chain, *additions = name.split("+")
        return cls(chain, *(a in additions for a in ADDITIONS))

    @property
    def name(self) -> str:
        return "+".join((self.chain, *(a for a in ADDITIONS if getattr(self, a))))

    @property
    def bounded(self) -> bool:
        """Whether a hit's energy is cut at its predecessor's where the order makes that a bound."""
        return self.chain != "free"

    @property
    def largest_of_hits_left(self) -> bool:
        return self.chain == "largest_of_hits_left"

    @property
    def draws_visible_energy(self) -> bool:
        """Whether generation needs each shower's visible energy (an energy budget, or a rescale to it)."""
        return self.energy_budget or self.rescale_to_visible_energy

    def check(self, *, order: str, condition_on_n_hits: bool) -> None:
        """Raise ValueError if a model of this hit ``order`` and conditioning cannot use the strategy."""
        if self.largest_of_hits_left and not (order == "energy" and condition_on_n_hits):
            msg = (
                "largest_of_hits_left needs order='energy' and condition_on_n_hits: each hit is then the largest "
                "of the hits still to place, below the one before"
            )
            raise ValueError(msg)
        if self.fitted_hottest_cell and order != "energy":
            msg = "fitted_hottest_cell needs order='energy', where the first hit is the hottest cell"
            raise ValueError(msg)
        if self.energy_budget and not condition_on_n_hits:
            msg = "energy_budget needs condition_on_n_hits: the budget is shared among the hits still to place"
            raise ValueError(msg)


def strategy_from_flags(
    *,
    bounded_by_previous: bool = False,
    largest_of_hits_left: bool = False,
    fitted_hottest_cell: bool = False,
    energy_budget: bool = False,
    rescale_to_visible_energy: bool = False,
) -> str:
    """The strategy a model of the old, one-flag-per-idea config had (each flag as the addition or chain it names)."""
    if largest_of_hits_left and not bounded_by_previous:
        msg = "largest_of_hits_left without bounded_by_previous was never a valid model"
        raise ValueError(msg)
    chain = "largest_of_hits_left" if largest_of_hits_left else "bounded" if bounded_by_previous else "free"
    return EnergyStrategy(chain, fitted_hottest_cell, energy_budget, rescale_to_visible_energy).name
