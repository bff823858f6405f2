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
# # 04 — Generating jets with a GPT on tokens
#
# The generative half of OmniJet-α (paper section II.3, III.2, appendices A.3, A.5).
# Each jet becomes a sentence `START t1 … tn STOP` in the tokens of notebook 02's
# tokenizer; a GPT learns to predict the next token; sampling it token by token from
# START until it says STOP writes new jets, which the tokenizer decodes back to
# constituents.
#
# Generated jets are compared with **reconstructed** real test jets (real jets through
# the same tokenizer), so that what we measure is the GPT, not the tokenizer:
# distributions with ratio panels and their Wasserstein distances, and a classifier
# that tries to tell the two apart (AUC 0.5: it cannot; paper: 0.54 for top + QCD).
#
# **What the defaults are, and why.** The paper trains on 10⁷ jets per class with
# 8 192 codes on a GPU; the `paper` profile keeps that. On a CPU the defaults use
# 40 000 jets per class and notebook 02's **512-code** tokenizer: with 8 192 codes a
# GPT on ~50 000 jets sees a typical code only a few hundred times, barely learns
# the vocabulary in the epochs a CPU affords, and its 8 194-way output makes an
# epoch ~5× slower; at 512 codes the same budget buys many more jet-epochs, and the
# classifier test improves with jet-epochs far more than it loses to the coarser
# tokens. `benchmarks/generation_fidelity.py` runs this notebook over a grid of
# training jets, epochs, codebooks and seeds to measure exactly that.

# %%
import hashlib
import time
from dataclasses import asdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from omnijet_lib.data.jet_files import write_jets
from omnijet_lib.data.jets import JETCLASS_LABELS
from omnijet_lib.devices import pick_device
from omnijet_lib.generation import decode_generated_jets, stop_probability_by_length
from omnijet_lib.metrics.distributions import wasserstein_distances
from omnijet_lib.metrics.generation_quality import (
    MIN_SAMPLES,
    OBSERVABLES,
    fpd_kpd_features,
    generated_vs_real_auc,
    jet_distributions,
    jetnet_metrics,
)
from omnijet_lib.notebooks import launch_training, notebook_values, save_metrics, start_notebook
from omnijet_lib.plotting import (
    compare_observable,
    draw_jet,
    plot_epoch_values,
    plot_learning_curves,
    plot_stop_probability,
    show_and_save,
)
from omnijet_lib.tokenizers.tokens import PAD
from omnijet_lib.training import TrainingConfig
from omnijet_lib.workflows import jet_token_data, train_jet_gpt

start_notebook()  # working directory: the project root, as in a headless run; mplhep style

# %% tags=["parameters"]
n_jets = 40_000  # jets per class (top, QCD): notebook 02's data and split (60/20/20)
seed = 1  # data and tokenizer seed of notebook 02; also seeds training, generation and the classifier
n_workers = None  # Pythia processes if the jets must be generated first
data_dir = "data/jets"
tokenizer = "conditional-512"  # trained by notebook 02: <tokenizer_dir>/<tokenizer>_seed<seed>.pt (paper: 8192)
tokenizer_dir = "data/tokenizers"
token_dir = "data/tokens"  # the jet files tokenized once, for this and later notebooks
embed_dim = 128  # GPT width (paper: 256; halved for a CPU)
n_heads = 8  # (paper: 8)
n_blocks = 3  # (paper: 3)
ffn_dim = 512  # feed-forward width (paper: 1024)
epochs = 10  # (paper: 30 epochs on millions of jets; use a GPU for that)
batch_size = 64  # (paper: 256)
learning_rate = 1e-3  # AdamW (paper: 1e-3)
lr_schedule = "cosine"  # or "constant"; cosine lowered the generated-vs-real AUC clearly in a study at 512 codes
warmup = 0.0  # fraction of the run over which the learning rate first rises linearly from 0
multiplicity_token = True  # draw each jet's multiplicity first, then its constituents (not in the paper; see below)
multiplicity_from = "training"  # n (and pT bin) from the training jets ("training") or from the GPT ("model")
count_down = True  # with multiplicity_token: every position also embeds how many constituents are still to come
jet_pt_bins = 0  # > 0: tell the GPT the jet's pT bin (this many, equally filled) before its constituents; 0: no
n_train = None  # training jets used, a random subset of the training split; None: all (the fidelity study varies it)
train_seed = None  # GPT initialisation, batch order, generation and classifier test; None: seed
monitor_jets = 500  # jets generated after every epoch to follow W1 of mass and multiplicity; 0: no monitor
best_by = "loss"  # the epoch kept: "loss" (validation), or the monitor's "sample_w1m" or "sample_w1n"
n_generated = None  # jets to generate; None: as many as there are test jets
generation_batch_size = 256
generation_precision = "fp32"  # "bf16": faster sampling on GPUs and bf16 CPUs (docs/scaling.md)
generation_compile = False  # True: torch.compile each generation step (pays on GPUs; docs/scaling.md)
temperature = 1.0
top_k = None  # None samples the full vocabulary, as the paper does
classifier_epochs = 30  # generated-vs-real DeepSets (paper: 100)
device = "auto"  # cpu, cuda, mps or auto
n_processes = 1  # > 1: train the GPT data-parallel under torchrun, e.g. one process per GPU (batch_size is per process)
precision = "fp32"  # "bf16" or "fp16": mixed-precision training, for GPUs
torch_compile = False  # torch.compile the GPT's training step: minutes of compiling, then faster steps (GPUs)
tf32 = False  # TF32 matrix products on CUDA GPUs that have them
run_dir = "runs/04_generation"  # checkpoints: a rerun resumes or reuses them
generated_dir = "data/generated"  # generated jets, in the jet file schema
output_dir = "figures/04_generation"

# %%
output_dir, run_dir = Path(output_dir), Path(run_dir)
output_dir.mkdir(parents=True, exist_ok=True)
# Each jet file is tokenized once; the token files are reused on the next run. Training reads
# them batch by batch from disk, so the data may be larger than memory; only the test jets,
# and the validation jets the monitor compares with, are read whole.
data = jet_token_data(
    n_jets=n_jets, seed=seed, data_dir=data_dir, tokenizer=tokenizer, tokenizer_dir=tokenizer_dir,
    token_dir=token_dir, n_workers=n_workers, n_train=n_train, device=device,
)  # fmt: skip
tok, tokenizer_file, dataset = data.tokenizer, data.tokenizer_file, data.dataset
train_idx, val_idx, test_idx = data.train_idx, data.val_idx, data.test_idx
labels, counts = np.unique(dataset.column("label", train_idx), return_counts=True)
train_classes = {JETCLASS_LABELS[int(label)]: int(count) for label, count in zip(labels, counts)}
test = dataset.read(test_idx)  # sequences and labels
lengths = dataset.lengths - 2  # constituents per jet
print(f"{len(dataset)} jets: {len(train_idx)} train {train_classes}, {len(val_idx)} val, {len(test_idx)} test;")
print(f"vocabulary {tok.codebook_size + 2}, {lengths.mean():.1f} tokens per jet (max {lengths.max()})")

# %% [markdown]
# ## Train the GPT
# Next-token cross-entropy on top and QCD jets together, padding left out of the loss
# (the validation loss is the per-token cross-entropy). An interrupted run continues
# where it stopped.
#
# The validation loss is measured on *real* prefixes. What the model makes of its
# *own* is followed by a monitor: after every epoch it generates `monitor_jets` jets
# (same seed each time) and measures the 1-D Wasserstein distance of their mass
# (`sample_w1m`, GeV) and multiplicity (`sample_w1n`) to the decoded validation jets;
# `best_by` may keep the epoch that generates best instead of the lowest loss.
#
# With `multiplicity_token`, each sequence becomes `START M(n) t1 … tn STOP`: the GPT
# learns the multiplicity first (its distribution exactly, as nothing comes before it)
# and then constituents that know how many they will be; generation draws n, then
# exactly n constituents. The paper's GPT instead ends a jet by drawing STOP, which on
# its own drifting prefixes comes too early (the exposure-bias section below). The GPT
# learns P(n) too, but Adam's steps keep that histogram noisy where jets are few; by
# default (`multiplicity_from="training"`) n is drawn from the training jets' own
# multiplicities, as the point-cloud generators of the field do.
#
# With `jet_pt_bins`, a second token follows: the jet's pT bin, `START M(n) P(b) t1 …`.
# A jet's pT is the sum of its constituents', but a GPT draws them one at a time with
# no notion of a total, so the generated jet-pT spectrum comes out smeared where the
# real one has the sharp edge of the selection (pT > 500 GeV) -- the jet-level
# difference a classifier finds first. Told the bin, the GPT draws constituents that
# add up to it; n and pT are drawn together, from one training jet (or from the GPT).
#
# With `n_processes` > 1 the GPT trains under `torchrun`, data-parallel (one process per
# GPU on a GPU node; gloo over CPU cores elsewhere): `omnijet train jet-gpt` with this
# notebook's parameters, the same training as the cell's own call below, which then
# finds the finished run in `run_dir` and returns it.

# %%
train_seed = seed if train_seed is None else train_seed
training = TrainingConfig(
    epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, lr_schedule=lr_schedule, warmup=warmup,
    seed=train_seed, device=device, best_by=best_by, precision=precision, compile=torch_compile, tf32=tf32,
)  # fmt: skip
start = time.perf_counter()
if n_processes > 1:
    launch_training("jet-gpt", notebook_values(globals(), "notebooks/04_generation.py"), n_processes=n_processes)
generator, result = train_jet_gpt(
    data, training, embed_dim=embed_dim, n_heads=n_heads, n_blocks=n_blocks, ffn_dim=ffn_dim,
    multiplicity_token=multiplicity_token, multiplicity_from=multiplicity_from, count_down=count_down,
    jet_pt_bins=jet_pt_bins, monitor_jets=monitor_jets, run_dir=run_dir,
)  # fmt: skip
train_seconds = time.perf_counter() - start
model, config = generator.model, generator.model.config
best = result.history[result.best_epoch]
print(
    f"{model.n_parameters():,} parameters; best epoch {result.best_epoch + 1} by {best_by}: val loss {best['val_loss']:.3f}"
    + (f", sample W1m {best['sample_w1m']:.2f} GeV, W1n {best['sample_w1n']:.2f}" if monitor_jets else "")
)

fig = plot_learning_curves({"GPT": result.history}, ylabel="next-token cross-entropy")
figures = [show_and_save(fig, output_dir, "learning_curve").name]
if monitor_jets:
    fig = plot_epoch_values(
        result.history, {"sample_w1m": "W1 of jet mass [GeV], monitor sample", "sample_w1n": "W1 of multiplicity"}
    )
    figures.append(show_and_save(fig, output_dir, "monitor").name)

# %% [markdown]
# ## Generate
# Batched sampling with a key/value cache from START until STOP (or 128 constituents);
# the jets are written in the same HDF5 schema as real ones.

# %%
n_generate = len(test_idx) if n_generated is None else n_generated
start = time.perf_counter()
generated = generator.sequences(
    n_generate, batch_size=generation_batch_size, temperature=temperature, top_k=top_k, seed=train_seed,
    precision=generation_precision, compile=generation_compile,
)  # fmt: skip
generation_seconds = time.perf_counter() - start
n_tokens_generated = int((generated != PAD).sum() - len(generated))  # drawn tokens: all but START
full = int(
    ((generated[:, -2] != PAD) & (generated[:, -2] != config.stop_token)).sum()
)  # 128 constituents: STOP was set, not drawn, as for truncated real jets
gen_jets, kept = decode_generated_jets(generated, tok)
generated_file = write_jets(
    Path(generated_dir) / f"{run_dir.name}_{tokenizer}_seed{seed}.h5",  # one file per run_dir
    gen_jets,
    provenance={
        "generator": "omnijet GPT", "tokenizer": str(tokenizer_file), "checkpoint": str(result.best_checkpoint),
        "seed": seed, "temperature": temperature, "top_k": -1 if top_k is None else top_k,
        "n_sequences": n_generate, "n_empty_dropped": n_generate - len(kept),
    },
)  # fmt: skip
speed = {
    "device": str(pick_device(device)),
    "batch_size": generation_batch_size,
    "seconds": generation_seconds,
    "jets_per_second": n_generate / generation_seconds,
    "ms_per_token": 1e3 * generation_seconds / n_tokens_generated,
}
print(
    f"{n_generate} jets in {generation_seconds:.1f} s ({speed['jets_per_second']:.0f} jets/s, "
    f"{speed['ms_per_token']:.3f} ms per token); {n_generate - len(kept)} empty (dropped), "
    f"{full} reached the length limit; written to {generated_file}"
)

# %%
fig, axes = plt.subplots(1, 4, figsize=(18, 4.5))
for i, ax in enumerate(axes):
    jet = gen_jets.constituents[i]
    draw_jet(np.asarray(jet.eta), np.asarray(jet.phi), np.asarray(jet.pt), ax=ax, title=f"generated jet {i}")
figures.append(show_and_save(fig, output_dir, "generated_jets").name)

# %% [markdown]
# ## Exposure bias: does the model end jets early on its own prefixes?
# Trained on real prefixes only (teacher forcing), the model never saw its own
# mistakes. Its probability of STOP after t constituents, averaged over real test
# jets and over its own generated jets: a higher curve on its own prefixes means
# generated jets end early (fewer constituents, lower mass).

# %%
if config.multiplicity_token:  # the end of a jet is drawn first, not a hazard along the way
    stop_probability = {"skipped": "the model draws the multiplicity first"}
    print("no STOP hazard to measure: this model draws each jet's multiplicity first (multiplicity_token)")
else:
    stop_curves = {
        "real prefixes": stop_probability_by_length(model, test.sequences),
        "own prefixes": stop_probability_by_length(model, generated),
    }
    fig = plot_stop_probability(stop_curves, reference="real prefixes")
    figures.append(show_and_save(fig, output_dir, "stop_probability").name)
    stop_probability = {  # at a few lengths, where at least 20 jets reach them
        name: {str(t): float(p[t]) for t in (20, 40, 60) if t < len(p) and count[t] >= 20}
        for name, (p, count) in stop_curves.items()
    }
    print("P(STOP) after t constituents:", stop_probability)

# %% [markdown]
# ## Generated vs reconstructed real jets

# %%
real_jets, _ = decode_generated_jets(test.sequences, tok, label=test.label)  # decoded exactly alike
# beside the generated jets, so that the comparison can be redone from the two files alone
reference_file = write_jets(
    generated_file.with_name(f"{generated_file.stem}_reconstructed_test.h5"), real_jets,
    provenance={"what": "real test jets, tokenized and decoded", "tokenizer": str(tokenizer_file), "seed": seed},
)  # fmt: skip
distributions = {
    "reconstructed real": jet_distributions(real_jets.constituents),
    "generated": jet_distributions(gen_jets.constituents),
}
reference, sample = distributions["reconstructed real"], distributions["generated"]
wasserstein = wasserstein_distances(sample, reference)
for name in OBSERVABLES:
    fig = compare_observable(distributions, name, reference="reconstructed real")
    figures.append(show_and_save(fig, output_dir, f"distribution_{name}").name)
# The jet structure the classifier test sees first: generated over reconstructed real means (1 is perfect).
structure = ("multiplicity", "jet_mass", "jet_tau21", "jet_tau32")
mean_ratios = {name: float(np.mean(sample[name].values) / np.mean(reference[name].values)) for name in structure}
print("1-D Wasserstein distance, generated vs reconstructed real:")
for name, value in wasserstein.items():
    print(f"  {name:14} {value:.4g}" + (f"   mean ratio {mean_ratios[name]:.3f}" if name in mean_ratios else ""))

# %% [markdown]
# ## Classifier test
# A DeepSets (particle MLP 10-10-10) learns generated (1) vs reconstructed real (0)
# from equal numbers of each, split 60/20/20, best epoch by validation loss.

# %%
gen_features, gen_mask, _ = tok.decode_sequences(generated)
# one classifier run per generated sample: a rerun at another temperature trains its own, not the last one's
sample_digest = hashlib.sha256(np.ascontiguousarray(generated).tobytes()).hexdigest()[:12]
real_features, real_mask, _ = tok.decode_sequences(test.sequences)
classifier = generated_vs_real_auc(
    (gen_features, gen_mask), (real_features, real_mask),
    training=TrainingConfig(epochs=classifier_epochs, batch_size=128, learning_rate=1e-3, seed=train_seed, device=device),
    run_dir=run_dir / "classifier" / sample_digest, split_seed=train_seed,
)  # fmt: skip
print(
    f"generated vs reconstructed real: AUC {classifier['auc']:.3f} (paper: 0.54), accuracy {classifier['accuracy']:.3f}"
)

# %% [markdown]
# ## Generation metrics as the field reports them
# JetNet's W1 of the jet mass (W1m) and of the constituent features (W1p), and the
# Fréchet and kernel physics distances (FPD, KPD) on the jet observables (mass, pT,
# multiplicity, τ21, τ32), each with its batch or bootstrap error. FPD and KPD depend
# on the sample size: the *real vs real* row, two halves of the reconstructed real
# test jets, is what a perfect generator would score here. The GPT is not told the
# class, so its jets are compared with top and QCD together.

# %%
# Two random halves: the test jets are stored top first, then QCD, so a plain cut would compare the two classes.
halves = np.array_split(np.random.default_rng(train_seed).permutation(len(real_jets)), 2)
samples = {"real": real_jets.constituents, "generated": gen_jets.constituents}
samples |= {"real, first half": samples["real"][halves[0]], "real, second half": samples["real"][halves[1]]}
# jets with defined tau21 and tau32 (fpd_kpd_features refuses a sample already too small)
usable = {name: len(fpd_kpd_features(c)) if len(c) >= MIN_SAMPLES else len(c) for name, c in samples.items()}
if min(usable.values()) < MIN_SAMPLES:  # a tiny run: too few jets for a distance with an error
    field_metrics = {"skipped": f"fewer than {MIN_SAMPLES} jets with defined observables in a sample: {usable}"}
    print(field_metrics["skipped"])
else:
    field_metrics = {
        "generated vs real": jetnet_metrics(samples["real"], samples["generated"], seed=train_seed),
        "real vs real": jetnet_metrics(samples["real, first half"], samples["real, second half"], seed=train_seed),
    }
    for name, m in field_metrics.items():
        print(
            f"{name:18} W1m {m['w1m']['value']:.3g} ± {m['w1m']['error']:.2g} GeV, "
            f"FPD {m['fpd']['value']:.3g} ± {m['fpd']['error']:.2g}, KPD {m['kpd']['value']:.3g} ± {m['kpd']['error']:.2g}, "
            + ", ".join(f"W1p {k} {v['value']:.3g}" for k, v in m["w1p"].items() if k != "mean")
        )

# %%
metrics = {
    "tokenizer": str(tokenizer_file),
    "n_jets": {"train": len(train_idx), "val": len(val_idx), "test": len(test_idx), "generated": n_generate},
    "train_classes": train_classes,
    "gpt": {**asdict(config), "parameters": model.n_parameters()},
    "training": {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "lr_schedule": lr_schedule,
        "warmup": warmup,
        "seed": train_seed,
        "multiplicity_from": multiplicity_from if multiplicity_token or jet_pt_bins else None,
        "jet_pt_bins": jet_pt_bins,
        "best_by": best_by,
        "monitor_jets": monitor_jets,
        "device": str(pick_device(device)),
        "n_processes": n_processes,
        "checkpoint": str(result.best_checkpoint),
        "seconds": train_seconds,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.history[result.best_epoch]["val_loss"],
        "history": result.history,
    },
    "generation": {**speed, "n_empty_dropped": n_generate - len(kept), "n_reached_length_limit": full},
    "generated_file": str(generated_file),
    "reference_file": str(reference_file),
    "classifier": classifier,
    "wasserstein": wasserstein,
    "mean_ratios": mean_ratios,
    "stop_probability": stop_probability,
    "jetnet_metrics": field_metrics,
    "figures": figures,
}
save_metrics(metrics, output_dir)
