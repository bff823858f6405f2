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
# # 05 — Transfer learning: from generating jets to tagging top quarks
#
# The cross-task result of OmniJet-α (paper section III.3, appendix A.4). The backbone
# that notebook 04 trained to predict the next token gets a classification head
# (Linear → ReLU → sum over constituents → Linear) and learns top vs QCD, three ways:
#
# - **from scratch**: all weights random — the baseline;
# - **fine-tune**: backbone from the generative model, all weights train;
# - **fine-tune, backbone fixed**: only the head trains.
#
# Each trains at several training sizes and seeds (AdamW, lr 1e-4, weight decay 0.01,
# early stopping with a patience set by the size, best epoch by validation loss),
# against one fixed validation and test set. If pre-training taught the backbone what
# jets look like, fine-tuning should need far fewer labelled jets (paper: ~84% accuracy
# at 100 jets, which from scratch needs ~10 000 jets for).

# %%
from dataclasses import asdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from omnijet_lib.devices import pick_device
from omnijet_lib.models.token_classifier import TokenClassifierConfig
from omnijet_lib.notebooks import launch_training, list_parameter, notebook_values, save_metrics, start_notebook
from omnijet_lib.plotting import show_and_save
from omnijet_lib.training import TrainingConfig
from omnijet_lib.transfer import patience_for, run_scan
from omnijet_lib.workflows import tagging_data

start_notebook()  # working directory: the project root, as in a headless run; mplhep style

# %% tags=["parameters"]
n_jets = 40_000  # jets per class (top, QCD): notebook 02/04's data and split (60/20/20)
seed = 1  # data and tokenizer seed of notebooks 02 and 04
n_workers = None  # Pythia processes if the jets must be generated first
data_dir = "data/jets"
tokenizer = "conditional-512"  # the tokenizer notebook 04's backbone was trained on
tokenizer_dir = "data/tokenizers"
token_dir = "data/tokens"
pretrained = "runs/04_generation/gpt/best.pt"  # notebook 04's generative checkpoint; its config sets the backbone
head = "sum"  # "sum" (paper) or "class_attention"
sizes = [100, 300, 1000]  # labelled training jets (paper: 100 ... 2M)
strategies = ["scratch", "finetune", "frozen"]
seeds = [0, 1]  # per size and strategy (paper: 5)
max_epochs = 15  # early stopping usually ends a run before (patience 20/10/5 by size; paper: no cap)
batch_size = 32
learning_rate = 1e-4  # AdamW (paper: 1e-4)
lr_schedule = "constant"  # "constant" or "cosine" (falls to 0 over the epochs)
warmup = 0.0  # fraction of the run over which the learning rate first rises linearly from 0
weight_decay = 0.01  # (paper: 0.01)
n_val = 500  # fixed validation jets from the validation split, shared by every run
n_test = 4000  # fixed test jets from the test split (at most the split's size)
device = "auto"  # cpu, cuda, mps or auto
n_processes = 1  # > 1: every run of the scan trains data-parallel under torchrun (batch_size per process)
precision = "fp32"  # "bf16" or "fp16": mixed-precision training, for GPUs
torch_compile = False  # torch.compile the training step: minutes of compiling, then faster steps (GPUs)
tf32 = False  # TF32 matrix products on CUDA GPUs that have them
scan_dir = "runs/05_transfer_learning"  # results.csv and each run's checkpoints: a rerun continues the scan
output_dir = "figures/05_transfer_learning"

# %%
# papermill -p passes a list as text: read each list parameter however it arrived
sizes = list_parameter(sizes, "sizes")
strategies = list_parameter(strategies, "strategies")
seeds = list_parameter(seeds, "seeds")
output_dir = Path(output_dir)
output_dir.mkdir(parents=True, exist_ok=True)
data, gpt_config = tagging_data(
    n_jets=n_jets, seed=seed, data_dir=data_dir, tokenizer=tokenizer, tokenizer_dir=tokenizer_dir, token_dir=token_dir,
    pretrained=pretrained, n_val=n_val, n_test=n_test, n_workers=n_workers,
)  # fmt: skip
print(f"training pool {len(data.train_labels)} jets, validation {len(data.val_labels)}, "
      f"test {len(data.test_labels)}; backbone {gpt_config}")  # fmt: skip
print("patience by size:", {n: patience_for(n) for n in sizes})

# %% [markdown]
# ## The scan
# One row per (size, strategy, seed) in `results.csv`; an interrupted scan continues
# with the cells it has not finished.

# %%
training = TrainingConfig(
    epochs=max_epochs, batch_size=batch_size, learning_rate=learning_rate, weight_decay=weight_decay,
    lr_schedule=lr_schedule, warmup=warmup, device=device, precision=precision, compile=torch_compile, tf32=tf32,
)  # fmt: skip
if n_processes > 1:  # `omnijet train fine-tuning` under torchrun; run_scan then finds every cell done
    launch_training("fine-tuning", notebook_values(globals(), "notebooks/05_transfer_learning.py"),
                    n_processes=n_processes)  # fmt: skip
rows = run_scan(
    data, TokenClassifierConfig(gpt=gpt_config, head=head),
    sizes=sizes, strategies=strategies, seeds=seeds, pretrained=pretrained, training=training, scan_dir=scan_dir,
)  # fmt: skip
rows = [r for r in rows if r["size"] in sizes and r["strategy"] in strategies and r["seed"] in seeds]

# %%
names = {"scratch": "from scratch", "finetune": "fine-tune", "frozen": "fine-tune (backbone fixed)"}
summary = {}
print(f"{'size':>6} " + " ".join(f"{names[s]:>30}" for s in strategies))
for n in sizes:
    cells = []
    for strategy in strategies:
        accuracy = np.array([r["accuracy"] for r in rows if r["size"] == n and r["strategy"] == strategy])
        rejection = np.array([r["rejection_50"] for r in rows if r["size"] == n and r["strategy"] == strategy])
        summary[f"{strategy}/{n}"] = {
            "accuracy_mean": accuracy.mean(), "accuracy_std": accuracy.std(),
            "rejection_50_mean": rejection.mean(), "rejection_50_std": rejection.std(), "n_seeds": len(accuracy),
        }  # fmt: skip
        cells.append(f"acc {accuracy.mean():.3f} ± {accuracy.std():.3f}, R50 {rejection.mean():5.1f}")
    print(f"{n:>6} " + " ".join(f"{c:>30}" for c in cells))

# %%
figures = []
for metric, ylabel, logy in (
    ("accuracy", "test accuracy", False),
    ("rejection_50", r"background rejection at $\varepsilon_S = 0.5$", True),
    ("rejection_30", r"background rejection at $\varepsilon_S = 0.3$", True),
):
    fig, ax = plt.subplots(figsize=(8, 6))
    for strategy in strategies:
        values = [[r[metric] for r in rows if r["size"] == n and r["strategy"] == strategy] for n in sizes]
        mean, std = np.array([np.mean(v) for v in values]), np.array([np.std(v) for v in values])
        ax.errorbar(sizes, mean, yerr=std, marker="o", capsize=4, label=names[strategy])
        ax.fill_between(sizes, mean - std, mean + std, alpha=0.15)
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("labelled training jets")
    ax.set_ylabel(ylabel)
    ax.legend(title=f"{len(seeds)} seeds: mean ± std")
    ax.set_title("top vs QCD (Pythia 8 jets)", fontsize="medium")
    figures.append(show_and_save(fig, output_dir, f"{metric}_vs_size").name)

# %%
metrics = {
    "pretrained": pretrained,
    "backbone": asdict(gpt_config),
    "head": head,
    "n_jets": {"train_pool": len(data.train_labels), "val": len(data.val_labels), "test": len(data.test_labels)},
    "n_processes": n_processes,
    "training": {**asdict(training), "device": str(pick_device(device))},
    "patience": {str(n): patience_for(n) for n in sizes},
    "results": rows,
    "summary": summary,
    "figures": figures,
}
save_metrics(metrics, output_dir)
