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
# # 09 — Cross-data pre-training: pre-train on one jet sample, train on another
#
# A foundation model earns its name when what it learnt on one large sample helps on
# another. Here the jet GPT is pre-trained on **domain A** -- generic dijets of
# 300–1500 GeV as a CMS-like detector would see them (tracking efficiency and
# resolution, ECAL and HCAL resolutions, thresholds; docs/jets.md) -- and then trained
# to generate **domain B**, notebook 01's generator-level top and QCD jets of
# 500–1000 GeV, with few or many B jets. Each B size is trained from scratch and
# starting from A's GPT (all weights trained, or the backbone fixed under a new head),
# with several seeds; the generated B jets are scored by a classifier test (AUC, 0.5 is
# perfect) and the jet-mass Wasserstein distance W1m. The tagging transfer of
# notebook 05 is repeated from A's backbone. The same chain runs on real data with an
# Aspen Open Jets file for A (`omnijet import-aspen-open-jets`).

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from omnijet_lib.cross_data import (
    domain_a_tokens,
    generation_scores,
    sample_distances,
    tokenizer_features,
    tokenizer_name,
    training_subset,
)
from omnijet_lib.data.jets import label_index
from omnijet_lib.models.token_classifier import TokenClassifierConfig
from omnijet_lib.notebooks import list_parameter, save_metrics, start_notebook
from omnijet_lib.plotting import plot_learning_curves, show_and_save
from omnijet_lib.tokenizers import load_tokenizer
from omnijet_lib.training import TrainingConfig
from omnijet_lib.transfer import run_scan
from omnijet_lib.workflows import (
    JetTokenData,
    jet_token_data,
    tagging_data,
    train_jet_gpt,
    train_jet_tokenizer,
)

start_notebook()  # working directory: the project root, as in a headless run; mplhep style

# %% tags=["parameters"]
n_jets_a = 20_000  # domain A: generic detector-level dijets, generated once (the pre-training sample)
a_file = None  # or a jet file to pre-train on instead (all its jets), e.g. Aspen Open Jets imported by omnijet
n_jets = 40_000  # domain B: top and QCD jets per class, notebook 01's data and split (60/20/20)
seed = 1  # data, split and tokenizer
n_workers = None  # Pythia processes if jets must be generated first
data_dir = "data/jets"
tokenizer = "conditional-512"  # the VQ-VAE spec fitted here
tokenizer_data = "a"  # "a": fitted on domain A (the pre-training's own); "both": on A and B together
hidden_dim = 64  # VQ-VAE, as notebook 02
vq_blocks = 2
vq_heads = 4
mlp_layers = 3
jet_weight = 2.0
tokenizer_epochs = 4
embed_dim = 128  # the GPT, as notebook 04 (paper: 256)
n_heads = 8
n_blocks = 3
ffn_dim = 512
multiplicity_token = True
count_down = True
pretrain_epochs = 10  # on domain A
epochs = 10  # on domain B, every size, strategy and seed (best epoch by validation loss)
batch_size = 64
learning_rate = 1e-3  # pre-training and training from scratch
finetune_learning_rate = 3e-4  # continuing from A's GPT
sizes = [1_000, 10_000]  # B training jets (the Aspen Open Jets paper: up to 10^6)
strategies = ["scratch", "finetune", "frozen"]  # "frozen": A's backbone fixed, a new generative head
seeds = [0, 1]
n_val = 2_000  # B validation jets (every run)
n_generated = 2_000  # jets generated per run, compared with as many B test jets
classifier_epochs = 20
tagging_sizes = [100, 1_000]  # notebook 05's tagging transfer from A's backbone; [] skips it
tagging_strategies = ["scratch", "finetune", "frozen"]
tagging_epochs = 15
device = "auto"
tokenizer_dir = "data/tokenizers"
token_dir = "data/tokens"
run_dir = "runs/09_cross_data"
output_dir = "figures/09_cross_data"

# %%
sizes, strategies, seeds = (
    list_parameter(v, n) for v, n in ((sizes, "sizes"), (strategies, "strategies"), (seeds, "seeds"))
)
tagging_sizes = list_parameter(tagging_sizes, "tagging_sizes")
tagging_strategies = list_parameter(tagging_strategies, "tagging_strategies")
output_dir, run_dir = Path(output_dir), Path(run_dir)
output_dir.mkdir(parents=True, exist_ok=True)
name = tokenizer_name(tokenizer, tokenizer_data)  # e.g. "dijet-conditional-512"; checks tokenizer_data
if a_file is not None:  # a tokenizer of another domain A gets its own name
    name = f"{Path(a_file).stem}{'' if tokenizer_data == 'a' else '+topqcd'}-{tokenizer}"
tokenizer_file = Path(tokenizer_dir) / f"{name}_seed{seed}.pt"

# %% [markdown]
# ## Domain A and the tokenizer
# Dijets from Pythia 8 with the pT-hat bias that spreads them over 300–1500 GeV, every
# event's particles through the detector response before jet clustering. The tokenizer
# is fitted on A (or on A and B): B's jets are then tokenized with it, so that both
# domains speak one vocabulary and A's GPT can be continued on B.

# %%
if not tokenizer_file.exists():
    features = tokenizer_features(
        tokenizer_data,
        n_jets_a=n_jets_a,
        n_jets=n_jets,
        seed=seed,
        data_dir=data_dir,
        n_workers=n_workers,
        a_file=a_file,
    )
    vq_training = TrainingConfig(
        epochs=tokenizer_epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed, device=device,
        best_by="mse",
    )  # fmt: skip
    tok = train_jet_tokenizer(
        tokenizer, features, vq_training, hidden_dim=hidden_dim, n_blocks=vq_blocks, n_heads=vq_heads,
        mlp_layers=mlp_layers, jet_weight=jet_weight, run_dir=run_dir / f"tokenizer_{tokenizer_data}",
    )  # fmt: skip
    tok.save(tokenizer_file)
tok = load_tokenizer(tokenizer_file, device=device)
dataset_a, train_a, val_a, test_a = domain_a_tokens(
    n_jets_a=n_jets_a, seed=seed, data_dir=data_dir, tokenizer_file=tokenizer_file, token_dir=token_dir,
    n_workers=n_workers, a_file=a_file,
)  # fmt: skip
data_b = jet_token_data(
    n_jets=n_jets, seed=seed, data_dir=data_dir, tokenizer=name, tokenizer_dir=tokenizer_dir, token_dir=token_dir,
    n_workers=n_workers, device=device,
)  # fmt: skip
# Drawn at random: each part of the split is sorted, top jets first, so its first jets would all be tops.
val_b, test_pick = (
    training_subset(part, min(n, len(part)), seed)
    for part, n in ((data_b.val_idx, n_val), (data_b.test_idx, n_generated))
)
test_b = data_b.dataset.read(test_pick).sequences  # real B test jets (top and QCD), tokenized
top_fraction = float(np.mean(data_b.dataset.column("label")[test_pick] == label_index("Tbqq")))
lengths = {"A": dataset_a.lengths - 2, "B": data_b.dataset.lengths - 2}
print(f"tokenizer {name}: {tok.codebook_size} codes; A: {len(dataset_a)} jets, B: {len(data_b.dataset)} jets")
print(f"B's real test sample: {len(test_pick)} jets, {top_fraction:.0%} top")
print("constituents per jet:", {d: f"{n.mean():.1f} (max {n.max()})" for d, n in lengths.items()})
# The floor of every distance at these sample sizes: B's validation jets against its test jets, both real.
floor_pick = training_subset(val_b, min(n_generated, len(val_b)), seed)
real_floor = sample_distances(data_b.dataset.read(floor_pick).sequences, test_b, tok, seed=seed)
print(f"two real B samples: W1m {real_floor['w1m']:.2f} GeV, W1n {real_floor['w1n']:.2f}, FPD {real_floor['fpd']:.4f}")

# %% [markdown]
# ## Pre-training on domain A

# %%
# One vocabulary for both domains: with the multiplicity token it is sized by the longest jet of either.
architecture = {
    "embed_dim": embed_dim, "n_heads": n_heads, "n_blocks": n_blocks, "ffn_dim": ffn_dim,
    "multiplicity_token": multiplicity_token, "multiplicity_from": "training", "count_down": count_down,
    "jet_pt_bins": 0, "monitor_jets": 0, "max_length": max(dataset_a.width, data_b.dataset.width),
}  # fmt: skip
pretraining = TrainingConfig(
    epochs=pretrain_epochs, batch_size=batch_size, learning_rate=learning_rate, lr_schedule="cosine", seed=seed,
    device=device,
)  # fmt: skip
data_a = JetTokenData(tok, tokenizer_file, dataset_a, train_a, val_a, test_a)
generator_a, result_a = train_jet_gpt(data_a, pretraining, run_dir=run_dir / "pretrain_a", **architecture)
pretrained = result_a.best_checkpoint
print(f"A's GPT: best epoch {result_a.best_epoch + 1}, val loss {result_a.best_val_loss:.3f} ({pretrained})")
scores_a_on_b = generation_scores(
    generator_a, test_b, n_generated=n_generated, seed=seed, classifier_epochs=classifier_epochs,
    run_dir=run_dir / "pretrain_a", device=device,
)  # fmt: skip
print(f"A's GPT, untouched, against B's test jets: AUC {scores_a_on_b['auc']:.3f}, "
      f"W1m {scores_a_on_b['w1m']:.2f} GeV, FPD {scores_a_on_b['fpd']:.4f}")  # fmt: skip

# %% [markdown]
# ## Training on domain B: from scratch, or from A's GPT
# Every (size, strategy, seed) trains in its own folder (a rerun reuses finished runs);
# the best epoch by B's validation loss generates `n_generated` jets, scored against as
# many of B's test jets.

# %%
rows, histories = [], {}
for size in sizes:
    for strategy in strategies:
        for s in seeds:
            train_idx = training_subset(data_b.train_idx, size, s)
            data = JetTokenData(tok, tokenizer_file, data_b.dataset, train_idx, val_b, data_b.test_idx)
            training = TrainingConfig(
                epochs=epochs, batch_size=batch_size, seed=s, device=device, lr_schedule="cosine",
                learning_rate=learning_rate if strategy == "scratch" else finetune_learning_rate,
            )  # fmt: skip
            cell = run_dir / f"b{size}_{strategy}_seed{s}"
            generator, result = train_jet_gpt(
                data, training, run_dir=cell, init_from=None if strategy == "scratch" else pretrained,
                strategy=strategy, progress=False, **architecture,
            )  # fmt: skip
            scores = generation_scores(
                generator, test_b, n_generated=n_generated, seed=s, classifier_epochs=classifier_epochs,
                run_dir=cell, device=device, progress=False,
            )  # fmt: skip
            rows.append({"size": size, "strategy": strategy, "seed": s, "val_loss": result.best_val_loss,
                         "best_epoch": result.best_epoch, **scores})  # fmt: skip
            histories[f"{strategy}, {size} jets, seed {s}"] = result.history
            print(f"B {size:>6} jets, {strategy:<8} seed {s}: val loss {result.best_val_loss:.3f}, "
                  f"AUC {scores['auc']:.3f}, W1m {scores['w1m']:.2f} GeV, W1n {scores['w1n']:.2f}, "
                  f"FPD {scores['fpd']:.4f}")  # fmt: skip

fig = plot_learning_curves({k: v for k, v in histories.items() if k.endswith(f"seed {seeds[0]}")},
                           ylabel="next-token cross-entropy on B")  # fmt: skip
figures = [show_and_save(fig, output_dir, "learning_curves_b").name]

# %% [markdown]
# ## Does pre-training on A help?
# Mean and spread over seeds against the number of B training jets: lower is better for
# all; the dashed lines are A's GPT without any B training, the dotted ones two samples of
# real B jets (the floor of W1m and FPD at these sizes).

# %%
summary = {}
for strategy in strategies:
    for size in sizes:
        cell = [r for r in rows if r["strategy"] == strategy and r["size"] == size]
        summary[f"{strategy}/{size}"] = {
            key: {"mean": float(np.mean([r[key] for r in cell])), "std": float(np.std([r[key] for r in cell]))}
            for key in ("auc", "w1m", "fpd", "val_loss")
        }
fig, axes = plt.subplots(2, 2, figsize=(14, 10), layout="constrained")
panels = (("auc", "classifier AUC, generated vs real B"), ("w1m", "W1 of jet mass [GeV]"),
          ("fpd", "FPD (mass, pT, multiplicity, τ21, τ32)"), ("val_loss", "B validation loss"))  # fmt: skip
for ax, (key, label) in zip(axes.flat, panels, strict=True):
    for k, strategy in enumerate(strategies):
        means = [summary[f"{strategy}/{n}"][key]["mean"] for n in sizes]
        stds = [summary[f"{strategy}/{n}"][key]["std"] for n in sizes]
        ax.errorbar(np.array(sizes) * (1 + 0.04 * k), means, yerr=stds, fmt="o-", capsize=4, label=strategy)
    if np.isfinite(scores_a_on_b.get(key, np.nan)):  # FPD is NaN for samples too small for it
        ax.axhline(scores_a_on_b[key], ls="--", color="grey", label="A's GPT, no B training")
    if np.isfinite(real_floor.get(key, np.nan)):
        ax.axhline(real_floor[key], ls=":", color="black", label="two real B samples")
    ax.set_xscale("log")
    ax.set_xlabel("B training jets")
    ax.set_ylabel(label)
    ax.legend(fontsize="small")
figures.append(show_and_save(fig, output_dir, "cross_data_scan").name)
print(f"{'B jets':>7} {'strategy':<9}{'AUC':>16}{'W1m [GeV]':>18}{'FPD':>20}")
for key, values in summary.items():
    strategy, size = key.split("/")
    print(f"{size:>7} {strategy:<9}{values['auc']['mean']:>10.3f} ± {values['auc']['std']:.3f}"
          f"{values['w1m']['mean']:>11.2f} ± {values['w1m']['std']:.2f}"
          f"{values['fpd']['mean']:>12.4f} ± {values['fpd']['std']:.4f}")  # fmt: skip

# %% [markdown]
# ## Tagging from A's backbone
# Notebook 05's top-vs-QCD tagger, now with the backbone pre-trained on domain A.

# %%
tagging_rows = []
if tagging_sizes:
    tagging, gpt_config = tagging_data(
        n_jets=n_jets, seed=seed, data_dir=data_dir, tokenizer=name, tokenizer_dir=tokenizer_dir, token_dir=token_dir,
        pretrained=pretrained, n_val=n_val, n_test=n_generated, n_workers=n_workers,
    )  # fmt: skip
    tagger_training = TrainingConfig(epochs=tagging_epochs, batch_size=32, learning_rate=1e-4, device=device)
    tagging_rows = run_scan(
        tagging, TokenClassifierConfig(gpt=gpt_config), sizes=tagging_sizes, strategies=tagging_strategies,
        seeds=seeds, pretrained=pretrained, training=tagger_training, scan_dir=run_dir / "tagging",
    )  # fmt: skip
    for size in tagging_sizes:
        for strategy in tagging_strategies:
            aucs = [r["auc"] for r in tagging_rows if r["size"] == size and r["strategy"] == strategy]
            print(f"tagging, {size:>5} labelled jets, {strategy:<8}: AUC {np.mean(aucs):.3f} ± {np.std(aucs):.3f}")

# %%
metrics = {
    "tokenizer": str(tokenizer_file),
    "tokenizer_data": tokenizer_data,
    "a_file": a_file,
    "n_jets": {"A": len(dataset_a), "B": len(data_b.dataset)},
    "pretrained": str(pretrained),
    "pretrain_best_val_loss": result_a.best_val_loss,
    "a_gpt_on_b": scores_a_on_b,
    "real_floor": real_floor,
    "real_test_top_fraction": top_fraction,
    "runs": rows,
    "summary": summary,
    "tagging": tagging_rows,
    "figures": figures,
}
save_metrics(metrics, output_dir)
