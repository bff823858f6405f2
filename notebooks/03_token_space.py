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
# # 03 — Token space: blobs and fixed points
#
# What does a token *mean*? A binned or unconditional token decodes to one fixed
# point in (η_rel, φ_rel, pT). A conditional VQ-VAE token is decoded together with
# the rest of the jet, so the same token lands in different places in different
# jets: decoded inside many random contexts it spreads into a **blob** (the paper's
# Fig. 2: 500 reconstructions, each among 50 random tokens).
#
# In JupyterLab the explorer below lets you pick a tokenizer and tokens; headless,
# the notebook draws the most frequent tokens of each tokenizer. It uses the
# tokenizers notebook 02 trained (run that first).

# %%
from pathlib import Path

import numpy as np

from omnijet_lib.data.jet_files import read_jets
from omnijet_lib.data.jets import concatenate
from omnijet_lib.data.pythia_jets import jet_dataset
from omnijet_lib.metrics.token_quality import fixed_points, token_blobs
from omnijet_lib.notebooks import list_parameter, save_metrics, start_notebook
from omnijet_lib.plotting import plot_token_blobs, show_and_save, token_explorer
from omnijet_lib.tokenizers import load_tokenizer

start_notebook()  # working directory: the project root, as in a headless run; mplhep style

# %% tags=["parameters"]
tokenizers = ["conditional-512", "unconditional-512", "binned-20"]  # trained by notebook 02
seed = 1  # the seed notebook 02 trained with (part of the file names) and of the random contexts
n_jets = 40_000  # jets per class of notebook 01/02's data: their tokens are the pool contexts come from
data_dir = "data/jets"
tokenizer_dir = "data/tokenizers"
n_contexts = 500  # reconstructions per token (paper: 500)
context_size = 50  # tokens in each random context, the chosen one included (paper: 50)
n_tokens_shown = 6  # headless: the most frequent tokens of each tokenizer are drawn
device = "auto"
output_dir = "figures/03_token_space"

# %%
tokenizers = list_parameter(tokenizers, "tokenizers")  # papermill -p passes a list as text
output_dir = Path(output_dir)
output_dir.mkdir(parents=True, exist_ok=True)
files = {spec: Path(tokenizer_dir) / f"{spec}_seed{seed}.pt" for spec in tokenizers}
missing = [str(f) for f in files.values() if not f.exists()]
if missing:
    msg = f"tokenizer files not found: {missing}; run notebook 02_tokenization_quality with the same seed first"
    raise FileNotFoundError(msg)
loaded = {spec: load_tokenizer(path, device=device) for spec, path in files.items()}

paths = jet_dataset(n_jets, seed=seed, data_dir=data_dir)
jets = concatenate([read_jets(paths["top"], stop=min(n_jets, 2000)), read_jets(paths["qcd"], stop=min(n_jets, 2000))])
pool, frequent = {}, {}
for spec, tok in loaded.items():
    tokens, mask = tok.encode_jets(jets)
    pool[spec] = tokens[mask]  # contexts are drawn from real jets' tokens
    values, counts = np.unique(pool[spec], return_counts=True)
    frequent[spec] = values[np.argsort(counts)[::-1][:n_tokens_shown]]
    print(f"{spec}: most frequent tokens {frequent[spec].tolist()}")

# %% [markdown]
# ## Explore (JupyterLab)
# Choose a tokenizer, type token numbers, press *draw*. Grey points are the fixed
# points of the context-free tokenizers.

# %%
token_explorer(
    loaded, context_pool=pool, default_tokens=frequent[tokenizers[0]], n_contexts=n_contexts, context_size=context_size
)

# %% [markdown]
# ## The default set, written to files
# For each tokenizer: its most frequent tokens decoded in random contexts. The blob
# size measures how much the context moves a token (zero for context-free ones).

# %%
background = {
    f"{spec} fixed points": fixed_points(tok)
    for spec, tok in loaded.items()
    if not getattr(getattr(tok, "config", None), "conditional", False)
}
figures, spread = [], {}
for spec, tok in loaded.items():
    blobs = token_blobs(
        tok, frequent[spec], context_pool=pool[spec], n_contexts=n_contexts, context_size=context_size, seed=seed
    )
    fig = plot_token_blobs(blobs, frequent[spec], background=background, title=spec)
    figures.append(show_and_save(fig, output_dir, f"token_blobs_{spec}").name)
    # Blob size: the spread of one token's reconstructions, averaged over the tokens shown.
    spread[spec] = {name: float(np.mean(np.std(values, axis=1))) for name, values in blobs.items()}
    print(f"{spec:22} blob spread: " + ", ".join(f"{k} {v:.3g}" for k, v in spread[spec].items()))

metrics = {
    "tokens_shown": {s: t.tolist() for s, t in frequent.items()},
    "blob_spread": spread,
    "n_contexts": n_contexts,
    "context_size": context_size,
    "figures": figures,
}
save_metrics(metrics, output_dir)
