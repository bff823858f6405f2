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
# # 08 — Pion showers in a hadronic calorimeter
#
# The same direct-spatial-token model as notebook 07, on another detector: charged pions
# of 10–100 GeV in an AHCAL-like steel–scintillator sampling calorimeter, 48 layers of
# 30 × 30 tiles of 3 × 3 cm² (docs/geometry.md). Nothing of the model changes but its
# vocabularies, which the geometry sizes; the showers come from the project's parameterised
# hadronic simulator (docs/hcal_pions.md): a start point drawn from the interaction length
# with a MIP track in front of it, an electromagnetic fraction growing with energy,
# profiles in radiation and interaction lengths, a wide core and halo, e/h = 1.2 and the
# large fluctuations of hadron showers.
#
# Hadron showers are harder than photon showers: fewer hits (a few hundred), but spread
# over five interaction lengths, starting anywhere, and with an energy resolution of
# ~58 %/√E rather than ~20 %/√E. The comparison with the simulator is the one of
# notebook 07, with the profile also read in interaction lengths and the energy
# resolution against the incident energy, and the Wasserstein distances set next to the
# ECAL's of notebook 07 when its results are there.

# %%
import json
import time
from dataclasses import asdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from omnijet_lib.data.pion_simulation import PionSimulationConfig, calibration_factor, simulate_pions
from omnijet_lib.data.shower_files import write_showers
from omnijet_lib.devices import pick_device
from omnijet_lib.generation import decode_generated_showers, generate_sequences, generate_showers
from omnijet_lib.metrics.distributions import wasserstein_distances
from omnijet_lib.metrics.energy_slices import energy_slice_table, energy_slices
from omnijet_lib.metrics.shower_quality import depth_profile, shower_distributions
from omnijet_lib.models.energy_strategies import EnergyStrategy
from omnijet_lib.notebooks import launch_training, list_parameter, notebook_values, save_metrics, start_notebook
from omnijet_lib.plotting import (
    compare_depth_profiles,
    compare_observable,
    draw_shower,
    plot_energy_slices,
    plot_learning_curves,
    show_and_save,
)
from omnijet_lib.shower_observables import SHOWER_OBSERVABLES
from omnijet_lib.tokenizers import load_tokenizer
from omnijet_lib.training import TrainingConfig
from omnijet_lib.workflows import (
    parse_variant,
    shower_split,
    shower_tokenizer_file,
    train_direct_shower_model,
    train_shower_gpt,
    train_shower_tokenizer,
)

start_notebook()  # working directory: the project root, as in a headless run; mplhep style

# %% tags=["parameters"]
n_showers = 2_000  # simulated showers, split 60/20/20
energy = (10.0, 100.0)  # incident pion energy [GeV]: a range drawn uniformly, or one value
particle = "pion"  # "pion", or "electron": the em-only reference in the same detector
seed = 1  # data, split, training and generation
data_dir = "data/pions"
# Direct models to train, "<tokenization>/<order>" as in notebook 07; the first is the main model. In layer order,
# the energy head that knows the visible energy left per hit to place keeps the pions' energy sums from its own
# chain and their deep profiles; in energy order, the chain overshoots the sums by ~10 % here.
variants = ["per_axis/layer", "per_axis/energy"]
n_components = 4  # Gaussians in the energy head
condition_on_n_hits = True  # False: the model ends showers with its STOP class
# How the chain of hit energies is drawn (notebook 07, omnijet_lib.models.energy_strategies).
energy_strategy_in_energy_order = "largest_of_hits_left+fitted_hottest_cell+rescale_to_visible_energy"
energy_strategy_in_layer_order = "bounded+energy_budget+rescale_to_visible_energy"
# Hit count and visible energy for an asked energy: drawn with the training showers' own scatter about the
# fitted mean ("empirical": a pion's long low tail of late starts and leakage) or a log-normal ("normal").
size_residuals = "empirical"
anchor_noise = 0.05  # training: the bound an energy-budget head places its means from, blurred by this much
embed_dim = 64  # (a GPU node: 256, as the paper's GPT)
n_heads = 4  # (8)
n_blocks = 3  # (3)
ffn_dim = 256  # (1024)
epochs = 10  # about half a minute each on 2 CPU cores
batch_size = 16  # (72)
learning_rate = 1e-3
lr_schedule = "constant"  # "constant" or "cosine" (falls to 0 over the epochs)
warmup = 0.0  # fraction of the run over which the learning rate first rises linearly from 0
temperature = 1.0  # of the voxel classes
energy_temperature = 1.0  # of the energy mixture (scales its widths)
slice_energies = [10.0, 30.0, 50.0, 70.0, 90.0]  # incident energies [GeV]: conditioning and resolution
n_per_slice = 300  # simulated and generated showers per slice energy (σ/E ~ 15 %: the mean to ~1 %)
# Also train notebook 06's VQ-token model (VQ-VAE, then GPT) on these showers: unconditional, as there.
vqvae_model = False
tokenizer = "conditional-4096"  # its VQ-VAE spec
vqvae_hidden_dim = 32
vqvae_layers = 2
vqvae_heads = 4
vqvae_epochs = 3
vqvae_batch_size = 32
generation_batch_size = 64
generation_precision = "fp32"  # "bf16": faster sampling on GPUs and bf16 CPUs (docs/scaling.md)
generation_compile = False  # True: torch.compile each generation step (pays on GPUs; docs/scaling.md)
ecal_metrics = "figures/07_direct_spatial_tokens/metrics.json"  # notebook 07's results, for the ECAL column
device = "auto"
n_processes = 1  # > 1: train the direct models data-parallel under torchrun (batch_size per process)
precision = "fp32"  # "bf16" or "fp16": mixed-precision training, for GPUs
torch_compile = False  # torch.compile the training step: minutes of compiling, then faster steps (GPUs)
tf32 = False  # TF32 matrix products on CUDA GPUs that have them
tokenizer_dir = "data/tokenizers"
token_dir = "data/tokens"
run_dir = "runs/08_hcal_pions"
generated_dir = "data/generated"
output_dir = "figures/08_hcal_pions"

# %%
# papermill -p passes a list as text: read each list parameter however it arrived
variants = list_parameter(variants, "variants")
slice_energies = list_parameter(slice_energies, "slice_energies")
energy = list_parameter(energy, "energy")  # one value or (low, high) [GeV]
output_dir, run_dir = Path(output_dir), Path(run_dir)
output_dir.mkdir(parents=True, exist_ok=True)
for variant in variants:
    parse_variant(variant)  # names checked before anything runs
for name in (energy_strategy_in_energy_order, energy_strategy_in_layer_order):
    EnergyStrategy.parse(name)
simulator = PionSimulationConfig(particle=particle)  # the particle's name is checked here
split = shower_split(n_showers=n_showers, seed=seed, energy=energy, data_dir=data_dir, particle=particle)
shower_file, showers, train_idx, val_idx, test_idx = split
test, geometry = showers[test_idx], showers.geometry
print(f"{len(showers)} {particle} showers in {geometry.name} ({' × '.join(map(str, geometry.shape))} cells, "
      f"{geometry.layer_lambda.sum():.1f} λ_I, {geometry.layer_x0.sum():.0f} X0): "
      f"{len(train_idx)} train, {len(val_idx)} val, {len(test_idx)} test")  # fmt: skip
print(f"hits per shower: mean {showers.n_hits.mean():.0f}, max {showers.n_hits.max()}")

fig = plt.figure(figsize=(18, 6))
for i in range(3):
    title = f"simulated {particle}, {test.incident_energy[i]:.0f} GeV"
    draw_shower(test, i, ax=fig.add_subplot(1, 3, i + 1, projection="3d"), title=title)
figures = [show_and_save(fig, output_dir, "simulated_showers").name]

# %% [markdown]
# ## Train the direct model(s)
# Next-hit voxel cross-entropy (48 layers, 30 × 30 tiles) plus the energy head's negative
# log-likelihood, conditioned on the incident energy. An interrupted run continues where it stopped.

# %%
training = TrainingConfig(
    epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, lr_schedule=lr_schedule, warmup=warmup,
    seed=seed, device=device, precision=precision, compile=torch_compile, tf32=tf32,
)  # fmt: skip
if n_processes > 1:  # `omnijet train hcal-showers` under torchrun; the loop below then reads the finished runs
    launch_training("hcal-showers", notebook_values(globals(), "notebooks/08_hcal_pions.py"), n_processes=n_processes)
models, results, train_seconds = {}, {}, {}
for variant in variants:
    models[variant], results[variant] = train_direct_shower_model(
        showers, train_idx, val_idx, training, variant=variant, n_components=n_components,
        condition_on_n_hits=condition_on_n_hits, energy_strategy_in_energy_order=energy_strategy_in_energy_order,
        energy_strategy_in_layer_order=energy_strategy_in_layer_order, anchor_noise=anchor_noise,
        embed_dim=embed_dim, n_heads=n_heads, n_blocks=n_blocks, ffn_dim=ffn_dim, run_dir=run_dir,
        size_residuals=size_residuals,
    )  # fmt: skip
    train_seconds[variant] = sum(r["seconds"] for r in results[variant].history)  # resumed runs included
    best = results[variant].history[results[variant].best_epoch]
    print(f"{variant}: {models[variant].n_parameters():,} parameters, best epoch {results[variant].best_epoch + 1}: "
          f"val loss {best['val_loss']:.3f} (voxel {best['val_voxel_ce']:.3f}, energy {best['val_energy_nll']:.3f})")  # fmt: skip
histories = {variant: result.history for variant, result in results.items()}

if vqvae_model:  # notebook 06's two steps on these showers: the VQ-VAE, then the GPT on its tokens
    vq_training = TrainingConfig(
        epochs=vqvae_epochs, batch_size=vqvae_batch_size, learning_rate=learning_rate, lr_schedule=lr_schedule,
        warmup=warmup, seed=seed, device=device, precision=precision, compile=torch_compile, tf32=tf32,
    )  # fmt: skip
    tokenizer_file = shower_tokenizer_file(tokenizer_dir, f"{particle}s-{tokenizer}", seed)
    if not tokenizer_file.exists():
        vq_tokenizer = train_shower_tokenizer(
            split, vq_training, tokenizer=tokenizer, vqvae_hidden_dim=vqvae_hidden_dim, vqvae_layers=vqvae_layers,
            vqvae_heads=vqvae_heads, run_dir=run_dir,
        )  # fmt: skip
        vq_tokenizer.save(tokenizer_file)
    vq_gpt, vq_result = train_shower_gpt(
        split, training, tokenizer_file=tokenizer_file, token_dir=token_dir, embed_dim=embed_dim, n_heads=n_heads,
        n_blocks=n_blocks, ffn_dim=ffn_dim, run_dir=run_dir,
    )  # fmt: skip
    histories["vqvae"] = vq_result.history
fig = plot_learning_curves(histories, ylabel="loss per hit (token)")
figures.append(show_and_save(fig, output_dir, "learning_curves").name)

# %% [markdown]
# ## Generate
# One shower per test shower, at its incident energy (the VQ-token model, unconditional,
# as many showers).

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
if vqvae_model:
    start = time.perf_counter()
    sequences = generate_sequences(
        vq_gpt, len(test), batch_size=generation_batch_size, seed=seed, precision=generation_precision,
        compile=generation_compile,
    )  # fmt: skip
    generated["vqvae"], kept = decode_generated_showers(sequences, load_tokenizer(tokenizer_file, device=device))
    speed["vqvae"] = (time.perf_counter() - start) / len(test)
    n_empty["vqvae"] = len(test) - len(kept)

main = variants[0]
generated_file = write_showers(
    Path(generated_dir) / f"{run_dir.name}_{main.replace('/', '_')}_seed{seed}.h5", generated[main],
    provenance={"generator": "omnijet direct spatial tokens", "checkpoint": str(results[main].best_checkpoint),
                "seed": seed, "temperature": temperature, "energy_temperature": energy_temperature},
)  # fmt: skip
print(f"seconds per generated shower on {pick_device(device)}, batch {generation_batch_size}:")
for name, seconds in speed.items():
    print(f"  {name:<20}{seconds:.3f} s  ({generated[name].n_hits.mean():.0f} hits on average, "
          f"{n_empty[name]} empty, left out)")  # fmt: skip

fig = plt.figure(figsize=(18, 6))
for i in range(3):
    title = f"{main}, {generated[main].incident_energy[i]:.0f} GeV"
    draw_shower(generated[main], i, ax=fig.add_subplot(1, 3, i + 1, projection="3d"), title=title)
figures.append(show_and_save(fig, output_dir, "generated_showers").name)

# %% [markdown]
# ## Observables
# Every observable of notebooks 06 and 07 on the HCAL grid (hits above half a MIP,
# 0.235 MeV), the longitudinal profile also in interaction lengths; 1-D Wasserstein
# distances to the simulated test showers, next to notebook 07's on the ECAL.

# %%
samples = {"simulated": shower_distributions(test)} | {n: shower_distributions(s) for n, s in generated.items()}
for name, s in [("simulated", test), *generated.items()]:
    samples[name]["depth_profile_lambda"] = depth_profile(s, unit="interaction_length")
wasserstein = {name: wasserstein_distances(samples[name], samples["simulated"]) for name in generated}
for name in SHOWER_OBSERVABLES:
    fig = compare_observable(samples, name, reference="simulated", geometry=geometry)
    figures.append(show_and_save(fig, output_dir, f"distribution_{name}").name)
fig = compare_depth_profiles({"simulated": test, **generated}, unit="interaction_length", reference="simulated")
figures.append(show_and_save(fig, output_dir, "depth_profile_lambda").name)

ecal = {}
if Path(ecal_metrics).exists():  # notebook 07's main model on the ECAL photons
    ecal_results = json.loads(Path(ecal_metrics).read_text())
    ecal_main = next(iter(ecal_results["models"]))
    ecal = ecal_results["wasserstein"].get(ecal_main, {})
    print(f"ECAL column: notebook 07's {ecal_main} ({ecal_metrics})")
else:
    print(f"no ECAL column: {ecal_metrics} not found (run notebooks/07_direct_spatial_tokens.py)")
columns = [*generated, *(["ECAL photons"] if ecal else [])]
print(f"1-D Wasserstein distance to the simulated showers:\n{'observable':<22}" + "".join(f"{c:>18}" for c in columns))
for observable in [*SHOWER_OBSERVABLES, "depth_profile_lambda"]:
    values = [wasserstein[n][observable] for n in generated] + ([ecal.get(observable, np.nan)] if ecal else [])
    print(f"{observable:<22}" + "".join(f"{v:>18.4g}" for v in values))

# %% [markdown]
# ## Fixed energies, and the energy resolution
# Pions asked for at fixed energies next to the simulator's: the visible energy sum's mean
# and width and the number of hits. `chain` is what the model's chain of energies reaches on
# its own, before the rescale to a visible energy drawn from the log-normal fitted to the
# training showers (for a model without a rescale, `ratio` is its own chain). The
# calibrated resolution σ/E of both follows, as a test-beam analysis would quote it.

# %%
simulated = [simulate_pions(n_per_slice, energy=float(e), seed=seed + 100 + i, config=simulator, progress=False)
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

factor = calibration_factor(geometry, simulator)  # GeV per visible MeV above threshold
print(f"calibration: {factor * 1e3:.2f} GeV per visible GeV; calibrated response and resolution of {main}:")
print(f"{'E [GeV]':>8}{'response sim':>14}{'response gen':>14}{'σ/E sim':>10}{'σ/E gen':>10}")
for row in slices[main]:
    e = row["incident_energy"]
    print(f"{e:>8.0f}{row['energy_sum_simulated_mean'] * factor / e:>14.3f}"
          f"{row['energy_sum_generated_mean'] * factor / e:>14.3f}"
          f"{row['energy_sum_simulated_std'] / row['energy_sum_simulated_mean']:>10.3f}"
          f"{row['energy_sum_generated_std'] / row['energy_sum_generated_mean']:>10.3f}")  # fmt: skip

# %%
metrics = {
    "shower_file": str(shower_file),
    "particle": particle,
    "geometry": geometry.name,
    "n_processes": n_processes,
    "n_showers": {"train": len(train_idx), "val": len(val_idx), "test": len(test_idx)},
    "models": {
        variant: {**asdict(models[variant].config), "parameters": models[variant].n_parameters(), "epochs": epochs,
                  "batch_size": batch_size, "seconds": train_seconds[variant],
                  "best_epoch": results[variant].best_epoch, "best_val_loss": results[variant].best_val_loss,
                  "checkpoint": str(results[variant].best_checkpoint)}
        for variant in variants
    },
    "vqvae_model": {"tokenizer": str(tokenizer_file), "checkpoint": str(vq_result.best_checkpoint)} if vqvae_model else None,
    "seconds_per_shower": speed,
    "generation_device": str(pick_device(device)),
    "n_empty_dropped": n_empty,
    "mean_hits": {name: float(s.n_hits.mean()) for name, s in generated.items()},
    "wasserstein": wasserstein,
    "ecal_metrics": ecal_metrics,
    "wasserstein_ecal": ecal,
    "energy_slices": slices,
    "calibration_gev_per_mev": factor,
    "generated_file": str(generated_file),
    "figures": figures,
}  # fmt: skip
save_metrics(metrics, output_dir)
