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
# # 06 — Calorimeter showers: OmniJet-α_C
#
# The jet workflow of notebooks 02–04, unchanged, applied to photon showers in the
# ILD-like Si-W ECAL (arXiv:2501.05534; docs/showers.md). A shower is a point cloud of
# up to 1700 hits (x, y, z cell, energy); a VQ-VAE turns each hit into a token, a GPT
# learns the token sequences, and sampling it writes new showers, which the tokenizer
# decodes and a post-processing puts back onto the 30 × 30 × 30 cell grid.
#
# Geant4 cannot run here, so the showers come from this project's parameterised
# (GFlash) simulator: `omnijet_lib.data.shower_simulation` says what it models and
# what it does not. Generated showers are compared with simulated test showers on the
# paper's observables, with ratio panels and 1-D Wasserstein distances; the token
# reconstruction of the same test showers shows what the tokenizer alone loses.

# %%
import time
from dataclasses import asdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from omnijet_lib.data.shower_files import write_showers
from omnijet_lib.data.shower_preprocessing import (
    ShowerPreprocessingConfig,
    preprocess_showers,
    showers_from_features,
    voxelise,
)
from omnijet_lib.data.shower_simulation import simulate_showers
from omnijet_lib.devices import pick_device
from omnijet_lib.generation import decode_generated_showers, generate_sequences
from omnijet_lib.generation.timing import reference_integrated
from omnijet_lib.metrics.distributions import wasserstein_distances
from omnijet_lib.metrics.resolution import fit_gaussian
from omnijet_lib.metrics.shower_quality import HIT_RESIDUALS, hit_residuals, shower_distributions
from omnijet_lib.metrics.token_quality import codebook_utilisation
from omnijet_lib.notebooks import launch_training, list_parameter, notebook_values, save_metrics, start_notebook
from omnijet_lib.plotting import (
    compare_distributions,
    compare_observable,
    draw_shower,
    plot_learning_curves,
    show_and_save,
)
from omnijet_lib.shower_observables import SHOWER_OBSERVABLES
from omnijet_lib.tokenizers.tokens import PAD
from omnijet_lib.training import TrainingConfig
from omnijet_lib.workflows import shower_split, shower_tokenizer_file, train_shower_gpt, train_shower_tokenizer

start_notebook()  # working directory: the project root, as in a headless run; mplhep style

# %% tags=["parameters"]
n_showers = 1_000  # simulated photon showers, split 60/20/20 (paper: 950 000, 760k/95k/95k)
energy = (10.0, 100.0)  # incident photon energy [GeV]: a range drawn uniformly, or one value (paper: 10-100)
seed = 1  # data, split, training and generation
data_dir = "data/showers"
# CPU defaults are small: a shower is ~1000 tokens, so attention and the output layer cost
# ~100x a jet's per sequence; the paper's values (in brackets) are for a GPU node.
tokenizer = "conditional-4096"  # VQ-VAE spec (paper: conditional-65536)
vqvae_hidden_dim = 32  # (paper: 128)
vqvae_layers = 2  # NormFormer blocks of encoder and decoder (paper: 4)
vqvae_heads = 4  # (paper: 8)
vqvae_epochs = 3  # (paper: best of many epochs on 760k showers)
vqvae_batch_size = 32  # (paper: 152)
embed_dim = 64  # GPT width (paper: 256)
n_heads = 4  # (paper: 8)
n_blocks = 3  # (paper: 3)
ffn_dim = 256  # (paper: 1024)
gpt_epochs = 10  # (3 left the GPT stopping showers far too early)
gpt_batch_size = 16  # (paper: 72)
learning_rate = 1e-3  # both models (paper: 1e-3)
lr_schedule = "constant"  # both models: "constant" or "cosine" (falls to 0 over the epochs)
warmup = 0.0  # fraction of the run over which the learning rate first rises linearly from 0
n_generated = None  # showers to generate; None: as many as there are test showers
generation_batch_size = 64
generation_precision = "fp32"  # "bf16": faster sampling on GPUs and bf16 CPUs (docs/scaling.md)
generation_compile = False  # True: torch.compile each generation step (pays on GPUs; docs/scaling.md)
temperature = 1.0
top_k = None  # None samples the full vocabulary, as the paper does
reference_points = 6  # sequence lengths at which the reference method (no cache) is timed
device = "auto"  # cpu, cuda, mps or auto
n_processes = 1  # > 1: train data-parallel under torchrun, e.g. one process per GPU (batch sizes per process)
precision = "fp32"  # "bf16" or "fp16": mixed-precision training, for GPUs
torch_compile = False  # torch.compile the training step: minutes of compiling, then faster steps (GPUs)
tf32 = False  # TF32 matrix products on CUDA GPUs that have them
tokenizer_dir = "data/tokenizers"
token_dir = "data/tokens"
generated_dir = "data/generated"
run_dir = "runs/06_calorimeter_showers"  # checkpoints: a rerun resumes or reuses them
output_dir = "figures/06_calorimeter_showers"

# %% [markdown]
# ## Simulated showers
# Simulated once and kept in `data/showers/` (reference HDF5 layout); a rerun reuses the file.

# %%
energy = list_parameter(energy, "energy")  # papermill -p passes a range as text
energy = energy[0] if len(energy) == 1 else tuple(energy)  # one value or a range (low, high) [GeV]
output_dir, run_dir = Path(output_dir), Path(run_dir)
output_dir.mkdir(parents=True, exist_ok=True)
start = time.perf_counter()
simulate_showers(500, energy=energy, seed=seed + 1000, progress=False)  # timed apart from the file's writing
simulation_rate = 500 / (time.perf_counter() - start)
split = shower_split(n_showers=n_showers, seed=seed, energy=energy, data_dir=data_dir)  # the same in notebook 07
shower_file, showers, train_idx, val_idx, test_idx = split
preprocessing = ShowerPreprocessingConfig()
features, mask = preprocess_showers(showers, preprocessing)
print(f"simulator: {simulation_rate:.0f} showers/s in this process; {shower_file}")
print(f"{len(showers)} showers: {len(train_idx)} train, {len(val_idx)} val, {len(test_idx)} test;")
print(f"{mask.sum(1).mean():.0f} hits per shower (min {mask.sum(1).min()}, max {mask.sum(1).max()})")

fig = plt.figure(figsize=(18, 6))
for i in range(3):
    draw_shower(showers, int(test_idx[i]), ax=fig.add_subplot(1, 3, i + 1, projection="3d"),
                title=f"simulated, {showers.incident_energy[test_idx[i]]:.0f} GeV")  # fmt: skip
figures = [show_and_save(fig, output_dir, "simulated_showers").name]

# %% [markdown]
# ## Tokenizer
# The paper's conditional VQ-VAE on (x, y, z, log E) of every hit, β = 0.8, α = 10,
# dead codes replaced every 100 batches; AdamW here where the paper used Ranger.
# Batches hold showers of similar length, cut to the longest of each.

# %%
switches = {"seed": seed, "device": device, "precision": precision, "compile": torch_compile, "tf32": tf32}
vqvae_training = TrainingConfig(
    epochs=vqvae_epochs, batch_size=vqvae_batch_size, learning_rate=learning_rate, lr_schedule=lr_schedule,
    warmup=warmup, **switches,
)  # fmt: skip
if n_processes > 1:  # `omnijet train shower-tokenizer` under torchrun; the cell then reads the finished run
    launch_training("shower-tokenizer", notebook_values(globals(), "notebooks/06_calorimeter_showers.py"),
                    n_processes=n_processes)  # fmt: skip
tok = train_shower_tokenizer(
    split, vqvae_training, tokenizer=tokenizer, vqvae_hidden_dim=vqvae_hidden_dim, vqvae_layers=vqvae_layers,
    vqvae_heads=vqvae_heads, run_dir=run_dir,
)  # fmt: skip
vqvae_seconds = sum(r["seconds"] for r in tok.history)  # all epochs, also those of an earlier, resumed run
tokenizer_file = tok.save(shower_tokenizer_file(tokenizer_dir, tokenizer, seed))

# %% [markdown]
# ## Token resolution
# Test showers encoded and decoded again: per hit, how far the reconstruction lands
# from the original (the paper's Fig. 1), and the codebook's utilisation.

# %%
test_tokens = tok.encode(features[test_idx], mask[test_idx])
reconstructed = tok.decode(test_tokens, mask[test_idx])
utilisation = codebook_utilisation(test_tokens, mask[test_idx], tok.codebook_size)
residuals = hit_residuals(features[test_idx], reconstructed, mask[test_idx], preprocessing)
resolution = {}
for name, values in residuals.items():
    fit = fit_gaussian(values)
    resolution[name] = {"sigma": fit.sigma, "shift": fit.mu, "rms": fit.rms}
print(f"codebook utilisation on the test showers: {utilisation:.1%}")
print(f"{'hit residual':<14}{'sigma':>10}{'shift':>10}{'rms':>10}")
for name, r in resolution.items():
    print(f"{name:<14}{r['sigma']:>10.4f}{r['shift']:>10.4f}{r['rms']:>10.4f}")

original_hits = showers_from_features(
    features[test_idx], mask[test_idx], showers.incident_energy[test_idx], preprocessing
)
decoded_hits = showers_from_features(reconstructed, mask[test_idx], showers.incident_energy[test_idx], preprocessing)
fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
for ax, (name, label) in zip(axes, HIT_RESIDUALS.items()):
    lo, hi = np.quantile(residuals[name], [0.005, 0.995])
    ax.hist(residuals[name], bins=np.linspace(lo, hi, 60), histtype="step", lw=1.5)
    ax.set_xlabel(label)
    ax.set_title(rf"$\sigma$ = {resolution[name]['sigma']:.3g}", fontsize="small")
figures.append(show_and_save(fig, output_dir, "token_resolution").name)
for column, name, xlabel in ((0, "x", "hit x [cells]"), (1, "y", "hit y [cells]"), (2, "z", "hit layer z"),
                             (3, "energy", "hit energy [MeV]")):  # fmt: skip
    values = {s: h.hits[h.mask][:, column] for s, h in (("simulated", original_hits), ("tokenized", decoded_hits))}
    options = {"logx": True, "logy": True} if name == "energy" else {"bins": np.linspace(-0.5, 29.5, 61)}
    fig = compare_distributions(values, xlabel=xlabel, reference="simulated", **options)
    figures.append(show_and_save(fig, output_dir, f"tokenized_hit_{name}").name)

# %% [markdown]
# ## The GPT
# Every shower becomes `START t1 … tn STOP` (n ≤ 1700); next-token cross-entropy, the
# output layer's logits computed in chunks so that a batch of 1702-token sequences at a
# vocabulary of 65 538 fits in memory. An interrupted run continues where it stopped.

# %%
gpt_training = TrainingConfig(
    epochs=gpt_epochs, batch_size=gpt_batch_size, learning_rate=learning_rate, lr_schedule=lr_schedule,
    warmup=warmup, **switches,
)  # fmt: skip
if n_processes > 1:  # `omnijet train shower-gpt` under torchrun
    launch_training("shower-gpt", notebook_values(globals(), "notebooks/06_calorimeter_showers.py"),
                    n_processes=n_processes)  # fmt: skip
model, result = train_shower_gpt(
    split, gpt_training, tokenizer_file=tokenizer_file, token_dir=token_dir, embed_dim=embed_dim, n_heads=n_heads,
    n_blocks=n_blocks, ffn_dim=ffn_dim, run_dir=run_dir,
)  # fmt: skip
gpt_seconds = sum(r["seconds"] for r in result.history)
print(f"{model.n_parameters():,} parameters; best epoch {result.best_epoch + 1}, val loss {result.best_val_loss:.3f}")

fig = plot_learning_curves({"GPT": result.history}, ylabel="next-token cross-entropy")
figures.append(show_and_save(fig, output_dir, "learning_curve").name)

# %% [markdown]
# ## Generation
# Batched sampling with a key/value cache (notebook 04's generator), decoding, and the
# post-processing onto the grid. Timed per shower next to the paper's 3 s on an A100 and
# to the reference method (no cache, batch 2, as the published code) measured here.

# %%
n_generate = len(test_idx) if n_generated is None else n_generated
start = time.perf_counter()
generated = generate_sequences(
    model, n_generate, batch_size=generation_batch_size, temperature=temperature, top_k=top_k, seed=seed,
    precision=generation_precision, compile=generation_compile,
)  # fmt: skip
sampling_seconds = time.perf_counter() - start
start = time.perf_counter()
gen_showers, kept = decode_generated_showers(generated, tok)
decoding_seconds = time.perf_counter() - start
n_tokens = (generated != PAD).sum(axis=1) - 2  # hits per generated sequence
generated_file = write_showers(
    Path(generated_dir) / f"{run_dir.name}_{tokenizer}_seed{seed}.h5", gen_showers,
    provenance={"generator": "omnijet GPT", "tokenizer": str(tokenizer_file), "checkpoint": str(result.best_checkpoint),
                "seed": seed, "temperature": temperature, "top_k": -1 if top_k is None else top_k,
                "n_sequences": n_generate, "n_empty_dropped": n_generate - len(kept)},
)  # fmt: skip

reference_generator = torch.Generator(device=pick_device(device)).manual_seed(seed)
mean_length = max(1, int(round(n_tokens.mean())))
reference_batch_seconds, _, _ = reference_integrated(model, 2, mean_length, reference_points, 1, reference_generator)
speed = {
    "device": str(pick_device(device)),
    "batch_size": generation_batch_size,
    "seconds_per_shower": (sampling_seconds + decoding_seconds) / n_generate,
    "sampling_seconds_per_shower": sampling_seconds / n_generate,
    "decoding_seconds_per_shower": decoding_seconds / n_generate,
    "ms_per_token": 1e3 * sampling_seconds / max(1, int(n_tokens.sum())),
    "reference_seconds_per_shower": reference_batch_seconds / 2,
    "reference_tokens": mean_length,
    "paper_seconds_per_shower_a100": 3.0,
}
print(f"{n_generate} showers ({n_tokens.mean():.0f} hits on average), {n_generate - len(kept)} empty; {generated_file}")
print(f"ours: {speed['seconds_per_shower']:.3f} s per shower on {speed['device']} at batch {generation_batch_size} "
      f"(sampling {speed['sampling_seconds_per_shower']:.3f} s, decoding + voxelising {speed['decoding_seconds_per_shower']:.4f} s)")  # fmt: skip
print(f"reference method here (no cache, batch 2, {mean_length} tokens): {speed['reference_seconds_per_shower']:.1f} s per shower"
      f" -> {speed['reference_seconds_per_shower'] / speed['seconds_per_shower']:.0f}x; paper: 3 s per shower on an A100")  # fmt: skip

fig = plt.figure(figsize=(18, 6))
for i in range(3):
    draw_shower(gen_showers, i, ax=fig.add_subplot(1, 3, i + 1, projection="3d"), title=f"generated {i}")
figures.append(show_and_save(fig, output_dir, "generated_showers").name)

# %% [markdown]
# ## Generated vs simulated
# The paper's observables for the simulated test showers, their token reconstruction
# (voxelised alike) and the generated showers; 1-D Wasserstein distances to the simulated.

# %%
samples = {
    "simulated": shower_distributions(showers[test_idx]),
    "tokenized": shower_distributions(voxelise(decoded_hits)),
    "generated": shower_distributions(gen_showers),
}
wasserstein = {name: wasserstein_distances(samples[name], samples["simulated"]) for name in ("tokenized", "generated")}
for name in SHOWER_OBSERVABLES:
    fig = compare_observable(samples, name, reference="simulated")
    figures.append(show_and_save(fig, output_dir, f"distribution_{name}").name)
print(f"1-D Wasserstein distance to the simulated showers:\n{'observable':<22}{'tokenized':>12}{'generated':>12}")
for name in SHOWER_OBSERVABLES:
    print(f"{name:<22}{wasserstein['tokenized'][name]:>12.4g}{wasserstein['generated'][name]:>12.4g}")

# %%
metrics = {
    "shower_file": str(shower_file),
    "simulation_showers_per_second": simulation_rate,
    "n_processes": n_processes,
    "n_showers": {"train": len(train_idx), "val": len(val_idx), "test": len(test_idx), "generated": n_generate},
    "tokenizer": {"file": str(tokenizer_file), "spec": tokenizer, **asdict(tok.config), "epochs": vqvae_epochs,
                  "batch_size": vqvae_batch_size, "seconds": vqvae_seconds, "codebook_utilisation": utilisation},
    "token_resolution": resolution,
    "gpt": {**asdict(model.config), "parameters": model.n_parameters(), "epochs": gpt_epochs, "batch_size": gpt_batch_size,
            "seconds": gpt_seconds, "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss},
    "generation": {**speed, "n_empty_dropped": n_generate - len(kept), "mean_hits": float(n_tokens.mean())},
    "generated_file": str(generated_file),
    "wasserstein": wasserstein,
    "figures": figures,
}  # fmt: skip
save_metrics(metrics, output_dir)
