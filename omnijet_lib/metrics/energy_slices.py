"""Conditioning on the incident energy: showers asked for at fixed energies against the simulator's at the same energies.

For each energy, :func:`energy_slices` generates showers with only the energy
asked for (a model conditioned on the number of hits draws it itself, one with an
energy budget or a rescale its visible energy too) and compares the mean and
width of the visible energy sum and of the number of hits with simulated showers
of that energy.  For a model that rescales its energies to a drawn visible
energy, the same showers are also generated unscaled: ``energy_sum_chain_*`` is
what its chain of energies reaches on its own.
"""

from __future__ import annotations

import math

import numpy as np

from omnijet_lib.data.showers import Showers
from omnijet_lib.generation import generate_showers
from omnijet_lib.models.spatial_gpt import SpatialGPT
from omnijet_lib.shower_observables import energy_sum, n_hits

SLICE_OBSERVABLES = {"energy_sum": energy_sum, "n_hits": n_hits}


def energy_slices(
    model: SpatialGPT,
    simulated: list[Showers],
    energies: list[float],
    *,
    batch_size: int = 64,
    temperature: float = 1.0,
    energy_temperature: float = 1.0,
    seed: int = 0,
    precision: str = "fp32",
    compile: bool = False,
) -> list[dict[str, float]]:
    """One row per incident energy: simulated and generated mean and std of each observable, and their mean ratio.

    ``simulated[i]`` are simulated showers of energy ``energies[i]``; as many are
    generated, with seed ``seed + i`` (the other options: see :func:`generate_showers`).
    """
    if len(simulated) != len(energies):
        msg = f"one simulated sample per energy: got {len(simulated)} samples for {len(energies)} energies"
        raise ValueError(msg)
    rows = []
    for i, (energy, reference) in enumerate(zip(energies, simulated)):
        options = {
            "batch_size": batch_size, "temperature": temperature, "energy_temperature": energy_temperature,
            "seed": seed + i, "progress": False, "precision": precision,
            "compile": compile,
        }  # fmt: skip
        asked, _ = generate_showers(model, np.full(len(reference), energy), **options)
        row = {"incident_energy": float(energy)}
        for name, observable in SLICE_OBSERVABLES.items():
            sim, gen = observable(reference).astype(float), observable(asked).astype(float)
            row |= {
                f"{name}_simulated_mean": sim.mean(), f"{name}_simulated_std": sim.std(),
                f"{name}_generated_mean": gen.mean(), f"{name}_generated_std": gen.std(),
                f"{name}_mean_ratio": gen.mean() / sim.mean(),
            }  # fmt: skip
        if model.config.energy.rescale_to_visible_energy:  # the same showers, left at the chain's own scale
            chain, _ = generate_showers(model, np.full(len(reference), energy), rescale=False, **options)
            chain_sum, sim_sum = energy_sum(chain), energy_sum(reference)
            row |= {
                "energy_sum_chain_mean_ratio": chain_sum.mean() / sim_sum.mean(),
                "energy_sum_chain_std_ratio": chain_sum.std() / sim_sum.std(),
            }
        rows.append(row)
    return rows


def energy_slice_table(rows: list[dict[str, float]]) -> str:
    """The rows of :func:`energy_slices` as a text table: energy sum and hits, simulated and generated."""
    lines = [
        f"{'E [GeV]':>8}{'E_sum sim':>14}{'E_sum gen':>14}{'ratio':>8}{'chain':>8}{'hits sim':>10}{'hits gen':>10}{'ratio':>8}"
    ]
    for r in rows:
        lines.append(
            f"{r['incident_energy']:>8.0f}{r['energy_sum_simulated_mean']:>9.0f}±{r['energy_sum_simulated_std']:<5.0f}"
            f"{r['energy_sum_generated_mean']:>9.0f}±{r['energy_sum_generated_std']:<5.0f}{r['energy_sum_mean_ratio']:>7.3f}"
            f"{r.get('energy_sum_chain_mean_ratio', math.nan):>8.3f}"
            f"{r['n_hits_simulated_mean']:>10.0f}{r['n_hits_generated_mean']:>10.0f}{r['n_hits_mean_ratio']:>8.3f}"
        )
    return "\n".join(lines)
