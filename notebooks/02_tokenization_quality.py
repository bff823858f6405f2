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
# # 02 — Tokenization quality: binned, unconditional and conditional VQ-VAE
#
# A GPT needs integers, so each constituent (log pT, η_rel, φ_rel) becomes a token.
# How much of the jet survives that step? This notebook trains the tokenizers chosen
# in the parameters, then measures (paper section III.1, appendix A.1–A.2):
#
# - the **resolution** of every constituent feature and of jet mass, pT, τ21, τ32
#   (reconstructed − original, with a fitted Gaussian σ and its shift μ), per class;
# - the **information lost**, as the accuracy drop of a top-vs-QCD classifier
#   trained on reconstructed instead of original constituents;
# - the **codebook utilisation**.
#
# The conditional VQ-VAE decodes each token in the context of the whole jet, which
# is why it should resolve jet-level quantities like the top mass best.

# %%
import time
from pathlib import Path

import numpy as np

from omnijet_lib.data.jets import label_index
from omnijet_lib.metrics.classifier_test import lost_information
from omnijet_lib.metrics.resolution import fit_gaussian, resolution_table
from omnijet_lib.metrics.token_quality import codebook_utilisation, mass_error_sources, token_residuals
from omnijet_lib.notebooks import launch_training, list_parameter, notebook_values, save_metrics, start_notebook
from omnijet_lib.plotting import overlay_residuals, show_and_save
from omnijet_lib.training import TrainingConfig
from omnijet_lib.workflows import jet_features, train_jet_tokenizer

start_notebook()  # working directory: the project root, as in a headless run; mplhep style

# %% tags=["parameters"]
n_jets = 40_000  # jets per class (top, QCD), from notebook 01's generator; split 60/20/20
seed = 1  # data, training and evaluation seed
n_workers = None  # Pythia processes if the jets must be generated first
data_dir = "data/jets"
# <kind>-<size>; binned: size is bins per feature. The paper's GPT uses conditional-8192 (the paper profile);
# on a CPU 512 codes, as notebook 04 explains
tokenizers = ["binned-20", "unconditional-512", "conditional-512"]
hidden_dim = 64  # VQ-VAE width (paper: 128)
n_blocks = 2  # conditional VQ-VAE NormFormer blocks in encoder and decoder (paper: 4)
n_heads = 4  # attention heads (paper: 8)
mlp_layers = 3  # unconditional VQ-VAE hidden layers (paper: 3)
epochs = 4  # VQ-VAE epochs: 3 000 steps on 48 000 jets (the paper trains far longer on 10^7 jets; use a GPU)
batch_size = 64
learning_rate = 1e-3
# Weight of a jet-level term in every VQ-VAE's loss: the reconstructed jet's four-momentum (relative to its pT)
# and mass (relative to the mass) against the original's; not in the paper, 0 gives the paper's loss. Only a
# conditional decoder sees the whole jet and can share a correction among its constituents.
jet_weight = 2.0
lr_schedule = "cosine"  # "constant" or "cosine" (falls to 0 over the epochs)
# The epoch kept: by reconstruction MSE. The whole validation loss (MSE + commitment) picks an early epoch,
# as the commitment term grows while the reconstruction still improves.
best_by = "mse"  # or "loss"
device = "auto"  # cpu, cuda, mps or auto
n_processes = 1  # > 1: train data-parallel under torchrun, e.g. one process per GPU (batch_size per process)
precision = "fp32"  # "bf16" or "fp16": mixed-precision training, for GPUs
torch_compile = False  # torch.compile the training step: minutes of compiling, then faster steps (GPUs)
tf32 = False  # TF32 matrix products on CUDA GPUs that have them
classifiers = ["deepsets", "transformer"]  # lost-information test; [] skips it
classifier_epochs = 8
tokenizer_dir = "data/tokenizers"  # trained tokenizers are saved here as '<spec>_seed<seed>.pt' for notebooks 03, 04
run_dir = "runs/02_tokenization_quality"  # training checkpoints: a rerun resumes or reuses them
output_dir = "figures/02_tokenization_quality"

# %%
# papermill -p passes a list as text: read each list parameter however it arrived
tokenizers = list_parameter(tokenizers, "tokenizers")
classifiers = list_parameter(classifiers, "classifiers")
output_dir, run_dir, tokenizer_dir = Path(output_dir), Path(run_dir), Path(tokenizer_dir)
output_dir.mkdir(parents=True, exist_ok=True)
prepared = jet_features(n_jets=n_jets, seed=seed, data_dir=data_dir, n_workers=n_workers)
jets, data = prepared.jets, prepared.features
class_names = {label_index("Tbqq"): "top", label_index("QCD"): "QCD"}

split = {
    "train": prepared.train_idx,
    "val": prepared.val_idx,
    "test": prepared.test_idx,
}  # the same split in notebook 04


train, val, test = (data[split[s]] for s in ("train", "val", "test"))
test_labels = jets.label[split["test"]]
print({s: len(i) for s, i in split.items()}, "jets;", f"{data.mask.sum(1).mean():.1f} constituents per jet")

# %% [markdown]
# ## Train the tokenizers
# A binned tokenizer only fits its grid to the training data; a VQ-VAE trains with
# the project's loop (best epoch by validation `best_by`; an interrupted run resumes).

# %%
training = TrainingConfig(
    epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, lr_schedule=lr_schedule, best_by=best_by,
    seed=seed, device=device, precision=precision, compile=torch_compile, tf32=tf32,
)  # fmt: skip
trained, seconds = {}, {}
if n_processes > 1:  # `omnijet train jet-tokenizer` under torchrun; the loop below then reads the finished runs
    launch_training(
        "jet-tokenizer", notebook_values(globals(), "notebooks/02_tokenization_quality.py"), n_processes=n_processes
    )
for spec in tokenizers:
    start = time.perf_counter()
    trained[spec] = train_jet_tokenizer(
        spec, prepared, training, hidden_dim=hidden_dim, n_blocks=n_blocks, n_heads=n_heads,
        mlp_layers=mlp_layers, jet_weight=jet_weight, run_dir=run_dir,
    )  # fmt: skip
    trained[spec].save(tokenizer_dir / f"{spec}_seed{seed}.pt")
    seconds[spec] = time.perf_counter() - start
    print(f"{spec}: {trained[spec].codebook_size} tokens, {seconds[spec]:.0f} s")

# %% [markdown]
# ## Resolution
# Residuals are reconstructed − original on the test jets; σ comes from a Gaussian
# fitted to the core (5–95% quantiles) so that rare large misses do not dominate it.

# %%
reconstructed = {spec: tok.reconstruct(test.features, test.mask) for spec, tok in trained.items()}  # once each
residuals = {
    spec: token_residuals(tok, test, test_labels, class_names, reconstructed=reconstructed[spec])
    for spec, tok in trained.items()
}
rows = []
for name in class_names.values():
    for row in resolution_table({spec: residuals[spec][name] for spec in trained}):
        rows.append({"class": name, **row})

units = {"pt": "GeV", "jet_mass": "GeV", "jet_pt": "GeV"}
print(f"{'class':5} {'observable':10} " + " ".join(f"{spec:>26}" for spec in trained))
for name in class_names.values():
    for observable in residuals[tokenizers[0]][name]:
        cells = [r for r in rows if r["class"] == name and r["observable"] == observable]
        text = " ".join(f"{'σ %.4g  μ %+.3g' % (r['sigma'], r['shift']):>26}" for r in cells)
        print(f"{name:5} {observable:10} {text}  {units.get(observable, '')}")

# %%
labels = {
    "pt": r"constituent $p_\mathrm{T}$: reco $-$ orig [GeV]",
    "eta_rel": r"$\eta_\mathrm{rel}$: reco $-$ orig",
    "phi_rel": r"$\phi_\mathrm{rel}$: reco $-$ orig",
    "jet_mass": r"jet mass: reco $-$ orig [GeV]",
    "jet_pt": r"jet $p_\mathrm{T}$: reco $-$ orig [GeV]",
    "jet_tau21": r"$\tau_{21}$: reco $-$ orig",
    "jet_tau32": r"$\tau_{32}$: reco $-$ orig",
}
figures = []
for name in class_names.values():
    for observable, xlabel in labels.items():
        fig = overlay_residuals(
            {spec: residuals[spec][name][observable] for spec in trained}, xlabel=f"{name} jets, {xlabel}"
        )
        figures.append(show_and_save(fig, output_dir, f"resolution_{name}_{observable}").name)

# %% [markdown]
# ### Where the jet-mass error comes from
# The mass residual again, with only the reconstructed pT put on the original angles
# ("pt"), or only the reconstructed angles with the original pT ("angles"). The two need
# not add up: errors of pT and angle can cancel or compound in the mass. A grid errs
# evenly over the cone; a VQ-VAE's codes follow where the constituents are and what its
# loss weighs.

# %%
mass_sources = {
    spec: mass_error_sources(tok, test, test_labels, class_names, reconstructed=reconstructed[spec])
    for spec, tok in trained.items()
}
top_mass_sigma_by_source = {
    spec: {source: fit_gaussian(r).sigma for source, r in sources["top"].items()} for spec, sources in mass_sources.items()
}  # fmt: skip
print("top-jet mass σ [GeV], only some features reconstructed")
print(f"{'':22} {'all':>7} {'pt':>7} {'angles':>7}")
for spec, by_source in top_mass_sigma_by_source.items():
    print(f"{spec:22} {by_source['all']:7.2f} {by_source['pt']:7.2f} {by_source['angles']:7.2f}")

# %% [markdown]
# ## Codebook utilisation and lost information
# Each classifier trains once on the original and once on the reconstructed test-set
# constituents (its own 60/20/20 split of them); the accuracy gap is what the tokens lost.

# %%
utilisation = {
    spec: codebook_utilisation(tok.encode(test.features, test.mask), test.mask, tok.codebook_size)
    for spec, tok in trained.items()
}
binary_labels = (test_labels == label_index("Tbqq")).astype(np.int64)
lost = {}
classifier_training = TrainingConfig(
    epochs=classifier_epochs, batch_size=128, learning_rate=1e-3, seed=seed, device=device
)
for spec in trained:
    for model in classifiers:
        lost[f"{spec}/{model}"] = lost_information(
            test.features, reconstructed[spec], test.mask, test.mask, binary_labels,
            model=model, training=classifier_training, run_dir=run_dir / "classifiers" / spec / model, split_seed=seed,
        )  # fmt: skip
for spec in trained:
    print(f"{spec:22} utilisation {utilisation[spec]:.1%}", end="")
    for model in classifiers:
        r = lost[f"{spec}/{model}"]
        print(f"  {model}: acc orig {r['accuracy_original']:.3f} reco {r['accuracy_reconstructed']:.3f}", end="")
    print()

# %% [markdown]
# ## The headline: top-jet mass resolution

# %%
top_mass_sigma = {r["tokenizer"]: r["sigma"] for r in rows if r["class"] == "top" and r["observable"] == "jet_mass"}
for spec, sigma in sorted(top_mass_sigma.items(), key=lambda kv: kv[1]):
    print(f"top-jet mass σ  {spec:22} {sigma:6.2f} GeV")

metrics = {
    "n_jets": {"train": len(train), "val": len(val), "test": len(test)},
    "run_dir": str(run_dir),
    "budget": {
        "n_processes": n_processes,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "lr_schedule": lr_schedule,
        "best_by": best_by,
        "jet_weight": jet_weight,
        "hidden_dim": hidden_dim,
        "n_blocks": n_blocks,
        "device": str(device),
    },
    "train_seconds": seconds,
    "codebook_size": {spec: tok.codebook_size for spec, tok in trained.items()},
    "codebook_utilisation": utilisation,
    "resolution": rows,
    "top_mass_sigma": top_mass_sigma,
    "top_mass_sigma_by_source": top_mass_sigma_by_source,
    "lost_information": lost,
    "tokenizer_files": {spec: str(tokenizer_dir / f"{spec}_seed{seed}.pt") for spec in trained},
    "figures": figures,
}
save_metrics(metrics, output_dir)
