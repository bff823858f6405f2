# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -jupyter
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 — Direct spatial tokens and a mixture-of-Gaussians energy head
#
# The published upgrade of OmniJet-α_C (docs/direct_tokens.md): no VQ-VAE. A hit enters the
# GPT as its voxel and its continuous energy; the model predicts the next hit's voxel
# as classes (one joint class among 27 000 voxels, or per axis: layer, then x, then y)
# and its log energy from a mixture of Gaussians, so no precision is lost to tokens.
# Beyond the paper, the model is conditioned on the incident photon energy: it
# generates showers for an energy the user asks for; and the energy density can be cut
# at the previous hit's energy wherever the hit order makes that an upper bound. More
# options keep the chain of energies in shape and at the right scale: in energy order,
# each energy drawn as the largest of the hits still to place, the hottest cell's from a
# fitted log-normal; in layer order, an energy head that knows how much of the shower's
# visible energy is left per hit still to place; and each shower's hits scaled to a
# visible energy drawn from a fitted log-normal, as CaloClouds calibrates its showers.
#
# Compared here on the same simulated test showers: the direct model(s), notebook 06's
# VQ-VAE model and the simulator — observables with ratio panels and Wasserstein
# distances, slices in incident energy, and the generation speed of both models
# measured side by side.

# %%
import time
from dataclasses import asdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from omnijet_lib.data.shower_files import write_showers
from omnijet_lib.data.shower_simulation import simulate_showers
from omnijet_lib.devices import pick_device
from omnijet_lib.generation import decode_generated_showers, generate_sequences, generate_showers
from omnijet_lib.metrics.distributions import wasserstein_distances
from omnijet_lib.metrics.energy_slices import energy_slice_table, energy_slices
from omnijet_lib.metrics.shower_quality import shower_distributions
from omnijet_lib.models.energy_strategies import EnergyStrategy
from omnijet_lib.models.gpt import load_gpt
from omnijet_lib.notebooks import launch_training, list_parameter, notebook_values, save_metrics, start_notebook
from omnijet_lib.plotting import (
    compare_distributions,
    compare_observable,
    draw_shower,
    plot_energy_slices,
    plot_learning_curves,
    show_and_save,
)
from omnijet_lib.shower_observables import SHOWER_OBSERVABLES
from omnijet_lib.tokenizers import load_tokenizer
from omnijet_lib.training import TrainingConfig
from omnijet_lib.workflows import parse_variant, shower_split, train_direct_shower_model

start_notebook()  # working directory: the project root, as in a headless run; mplhep style

# %% tags=["parameters"]
n_showers = 1_000  # simulated showers, split 60/20/20 -- notebook 06's file and split (paper: 950 000)
energy = (10.0, 100.0)  # incident photon energy [GeV] (paper: 10-100)
seed = 1  # data, split, training and generation
data_dir = "data/showers"
# Direct models to train, "<tokenization>/<order>": joint or per_axis; hits by energy or by layer.
# The first is the main model (its showers are drawn and written out): by energy, as the paper, which
# with the bounded energy head below came closest to the simulator's energy sums here.
variants = ["per_axis/energy", "per_axis/layer"]
n_components = 4  # Gaussians in the energy head (docs/direct_tokens.md: ~4)
# Also condition on the number of hits: the model then places exactly the hits asked for, knowing how
# far along it is, and a log-normal fitted to the training showers draws that number for an energy.
condition_on_n_hits = True  # False: the paper's model, which ends showers with its STOP class
# How the variants of each order draw the chain of hit energies: an energy strategy, a chain and its additions
# joined by "+" (omnijet_lib.models.energy_strategies; "free" is the paper's plain mixture). Both cut each energy
# at the previous hit's where the order makes that a bound, and scale each shower's hits to a visible energy
# drawn from a log-normal in E_inc fitted to the training showers. In energy order each energy is the largest of
# the hits still to place (an order statistic) and the hottest cell's comes from a fitted log-normal; in layer
# order the energy head reads the visible energy left per hit still to place (an energy budget -- in energy
# order it holds the sum but starves the last hits, which then fall to ~1 keV; the order statistic keeps them).
energy_strategy_in_energy_order = "largest_of_hits_left+fitted_hottest_cell+rescale_to_visible_energy"
energy_strategy_in_layer_order = "bounded+energy_budget+rescale_to_visible_energy"
anchor_noise = 0.05  # training: the bound an energy-budget head places its means from, blurred by this much
embed_dim = 64  # (a GPU node: 256, as the paper's GPT)
n_heads = 4  # (8)
n_blocks = 3  # (3)
ffn_dim = 256  # (1024)
epochs = 10  # about a minute each on a CPU core
batch_size = 16  # (72)
learning_rate = 1e-3
lr_schedule = "constant"  # "constant" or "cosine" (falls to 0 over the epochs)
warmup = 0.0  # fraction of the run over which the learning rate first rises linearly from 0
temperature = 1.0  # of the voxel classes
energy_temperature = 1.0  # of the energy mixture (scales its widths); keep 1 for bounded chains (see energy_strategies)
slice_energies = [10.0, 50.0, 90.0]  # incident energies [GeV] for the conditioning check
n_per_slice = 100  # simulated and generated showers per slice energy
generation_batch_size = 64
generation_precision = "fp32"  # "bf16": faster sampling on GPUs and bf16 CPUs (docs/scaling.md)
generation_compile = False  # True: torch.compile each generation step (pays on GPUs; docs/scaling.md)
vqvae_tokenizer = "data/tokenizers/showers_conditional-4096_seed1.pt"  # notebook 06's tokenizer
vqvae_checkpoint = "runs/06_calorimeter_showers/gpt/best.pt"  # and its GPT
device = "auto"
n_processes = 1  # > 1: train data-parallel under torchrun, e.g. one process per GPU (batch_size per process)
precision = "fp32"  # "bf16" or "fp16": mixed-precision training, for GPUs
torch_compile = False  # torch.compile the training step: minutes of compiling, then faster steps (GPUs)
tf32 = False  # TF32 matrix products on CUDA GPUs that have them
run_dir = "runs/07_direct_spatial_tokens"
generated_dir = "data/generated"
output_dir = "figures/07_direct_spatial_tokens"

# %%
# papermill -p passes a list as text: read each list parameter however it arrived
variants = list_parameter(variants, "variants")
energy_strategies = {"energy": energy_strategy_in_energy_order, "layer": energy_strategy_in_layer_order}
slice_energies = list_parameter(slice_energies, "slice_energies")
energy = list_parameter(energy, "energy")  # papermill -p passes a range as text: one value or (low, high) [GeV]
output_dir, run_dir = Path(output_dir), Path(run_dir)
output_dir.mkdir(parents=True, exist_ok=True)
for variant in variants:
    parse_variant(variant)  # names checked before anything runs
strategies = {order: EnergyStrategy.parse(name) for order, name in energy_strategies.items()}  # names checked
for path, what in ((vqvae_tokenizer, "tokenizer"), (vqvae_checkpoint, "GPT checkpoint")):
    if not Path(path).exists():
        msg = f"notebook 06's {what} not found: {path}; run notebooks/06_calorimeter_showers.py first"
        raise FileNotFoundError(msg)
shower_file, showers, train_idx, val_idx, test_idx = shower_split(
    n_showers=n_showers, seed=seed, energy=energy, data_dir=data_dir
)
test = showers[test_idx]  # notebook 06's split
print(f"{len(showers)} showers: {len(train_idx)} train, {len(val_idx)} val, {len(test_idx)} test")

# %% [markdown]
# ## Train the direct models
# Next-hit voxel cross-entropy plus the energy head's negative log-likelihood; each
# variant orders the hits its own way. An interrupted run continues where it stopped.

# %%
training = TrainingConfig(
    epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, lr_schedule=lr_schedule, warmup=warmup,
    seed=seed, device=device, precision=precision, compile=torch_compile, tf32=tf32,
)  # fmt: skip
models, results, train_seconds = {}, {}, {}
if n_processes > 1:  # `omnijet train direct-showers` under torchrun; the loop below then reads the finished runs
    launch_training(
        "direct-showers", notebook_values(globals(), "notebooks/07_direct_spatial_tokens.py"), n_processes=n_processes
    )
for variant in variants:
    models[variant], results[variant] = train_direct_shower_model(
        showers, train_idx, val_idx, training, variant=variant, n_components=n_components,
        condition_on_n_hits=condition_on_n_hits, energy_strategy_in_energy_order=energy_strategy_in_energy_order,
        energy_strategy_in_layer_order=energy_strategy_in_layer_order, anchor_noise=anchor_noise,
        embed_dim=embed_dim, n_heads=n_heads, n_blocks=n_blocks, ffn_dim=ffn_dim, run_dir=run_dir,
    )  # fmt: skip
    train_seconds[variant] = sum(r["seconds"] for r in results[variant].history)  # resumed runs included
    best = results[variant].history[results[variant].best_epoch]
    print(f"{variant}: {models[variant].n_parameters():,} parameters, best epoch {results[variant].best_epoch + 1}: "
          f"val loss {best['val_loss']:.3f} (voxel {best['val_voxel_ce']:.3f}, energy {best['val_energy_nll']:.3f})")  # fmt: skip

fig = plot_learning_curves(
    {variant: result.history for variant, result in results.items()}, ylabel="voxel cross-entropy + energy NLL per hit"
)
figures = [show_and_save(fig, output_dir, "learning_curves").name]

# %% [markdown]
# ## Generate, side by side
# The direct models generate one shower per test shower, at its incident energy; notebook
# 06's VQ-VAE model (unconditional) generates as many. Both are timed in this run, on the
# same device, with the same batch size.

# %%
generated, speed, n_empty = {}, {}, {}
for variant, model in models.items():
    start = time.perf_counter()
    generated[variant], kept = generate_showers(
        model, test.incident_energy, batch_size=generation_batch_size, temperature=temperature,
        energy_temperature=energy_temperature, seed=seed, precision=generation_precision,
        compile=generation_compile,
    )  # fmt: skip
    speed[variant] = (time.perf_counter() - start) / len(test)
    n_empty[variant] = len(test) - len(kept)  # showers that stopped before their first hit

vqvae_tok = load_tokenizer(vqvae_tokenizer, device=device)
vqvae_model = load_gpt(vqvae_checkpoint, device=device)
start = time.perf_counter()
sequences = generate_sequences(
    vqvae_model, len(test), batch_size=generation_batch_size, seed=seed, precision=generation_precision,
    compile=generation_compile,
)  # fmt: skip
generated["vqvae"], kept = decode_generated_showers(sequences, vqvae_tok)
speed["vqvae"] = (time.perf_counter() - start) / len(test)
n_empty["vqvae"] = len(test) - len(kept)

main = variants[0]
generated_file = write_showers(
    Path(generated_dir) / f"{run_dir.name}_{main.replace('/', '_')}_seed{seed}.h5", generated[main],
    provenance={"generator": "omnijet direct spatial tokens", "checkpoint": str(results[main].best_checkpoint),
                "seed": seed, "temperature": temperature, "energy_temperature": energy_temperature},
)  # fmt: skip
print(
    f"seconds per generated shower on {pick_device(device)}, batch {generation_batch_size} (decoding and voxelising included):"
)
for name, seconds in speed.items():
    print(
        f"  {name:<20}{seconds:.3f} s  ({generated[name].n_hits.mean():.0f} hits on average, {n_empty[name]} empty, left out)"
    )

fig = plt.figure(figsize=(18, 6))
for i in range(3):
    title = f"{main}, {generated[main].incident_energy[i]:.0f} GeV"
    draw_shower(generated[main], i, ax=fig.add_subplot(1, 3, i + 1, projection="3d"), title=title)
figures.append(show_and_save(fig, output_dir, "generated_showers").name)

# %% [markdown]
# ## Observables
# Every observable of notebook 06 for the simulator, the VQ-VAE model and the direct
# model(s); 1-D Wasserstein distances to the simulated test showers.

# %%
samples = {"simulated": shower_distributions(test)}
samples |= {name: shower_distributions(s) for name, s in generated.items()}
wasserstein = {name: wasserstein_distances(samples[name], samples["simulated"]) for name in generated}
for name in SHOWER_OBSERVABLES:
    fig = compare_observable(samples, name, reference="simulated")
    figures.append(show_and_save(fig, output_dir, f"distribution_{name}").name)
names = list(generated)
print(f"1-D Wasserstein distance to the simulated showers:\n{'observable':<22}" + "".join(f"{n:>18}" for n in names))
for observable in SHOWER_OBSERVABLES:
    print(f"{observable:<22}" + "".join(f"{wasserstein[n][observable]:>18.4g}" for n in names))

# The hit-energy spectrum in fine bins: tokens can only give back the energies their codes
# decode to, the mixture gives any. It starts below the simulator's lowest hits (5 keV), so that
# energies a model puts there show.
fine = np.geomspace(0.001, 50.0, 241)
spectra = {"simulated": samples["simulated"]["cell_energy"].values, "vqvae": samples["vqvae"]["cell_energy"].values,
           main: samples[main]["cell_energy"].values}  # fmt: skip
fig = compare_distributions(spectra, bins=fine, logx=True, logy=True, xlabel="hit energy [MeV]", reference="simulated")
figures.append(show_and_save(fig, output_dir, "hit_energy_spectrum_fine").name)
distinct = {name: len(np.unique(values)) for name, values in spectra.items()}
print(f"distinct hit energies among {', '.join(f'{n}: {len(v)} hits' for n, v in spectra.items())}: {distinct}")
below_10_kev = {name: float((values < 0.01).mean()) for name, values in spectra.items()}
print("fraction of hits below 10 keV:", {name: round(f, 3) for name, f in below_10_kev.items()})

# %% [markdown]
# ## Conditioning on the incident energy
# Showers asked for at fixed energies, next to the simulator's at the same energies:
# mean and width of the visible energy sum and of the number of hits, for every direct model. Only the energy
# is asked for; a model conditioned on the number of hits draws it itself, and one with an energy budget or a
# rescale its visible energy too (together, from log-normals fitted to the training showers, with their
# correlation). For a rescaled model the column `chain` gives the energy-sum ratio its chain of energies
# reaches on its own, before the rescale.

# %%
simulated = [simulate_showers(n_per_slice, energy=float(e), seed=seed + 100 + i, progress=False)
             for i, e in enumerate(slice_energies)]  # fmt: skip
slices = {}
for variant, model in models.items():
    slices[variant] = energy_slices(
        model, simulated, slice_energies, batch_size=generation_batch_size, temperature=temperature,
        energy_temperature=energy_temperature, seed=seed + 100, precision=generation_precision,
        compile=generation_compile,
    )  # fmt: skip
    print(f"{variant}:\n{energy_slice_table(slices[variant])}")
fig = plot_energy_slices(slices, reference=main)
figures.append(show_and_save(fig, output_dir, "energy_slices").name)

# %%
metrics = {
    "shower_file": str(shower_file),
    "n_processes": n_processes,
    "n_showers": {"train": len(train_idx), "val": len(val_idx), "test": len(test_idx)},
    "models": {
        variant: {**asdict(models[variant].config), "parameters": models[variant].n_parameters(), "epochs": epochs,
                  "batch_size": batch_size, "seconds": train_seconds[variant],
                  "best_epoch": results[variant].best_epoch, "best_val_loss": results[variant].best_val_loss,
                  "checkpoint": str(results[variant].best_checkpoint)}
        for variant in variants
    },
    "vqvae_model": {"tokenizer": vqvae_tokenizer, "checkpoint": vqvae_checkpoint},
    "seconds_per_shower": speed,
    "generation_device": str(pick_device(device)),
    "n_empty_dropped": n_empty,
    "mean_hits": {name: float(s.n_hits.mean()) for name, s in generated.items()},
    "distinct_hit_energies": distinct,
    "fraction_of_hits_below_10_keV": below_10_kev,
    "wasserstein": wasserstein,
    "energy_slices": slices,
    "generated_file": str(generated_file),
    "figures": figures,
}  # fmt: skip
save_metrics(metrics, output_dir)
