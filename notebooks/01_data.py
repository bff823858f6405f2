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
# # 01 — Jets: top and QCD from Pythia 8 + FastJet
#
# The data every later notebook stands on. JetClass cannot be downloaded here, so
# real jets are generated: pp collisions at 13 TeV, anti-kT R = 0.8 on visible
# final-state particles, 500 < pT < 1000 GeV, |η| < 2; top jets are truth-matched
# to t → bqq′ (docs/jets.md). The files are generated once and reused.
#
# This notebook shows what separates the two classes: a top jet carries three hard
# prongs and the top mass, a QCD jet one prong and a falling mass spectrum.

# %%
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from omnijet_lib.data.jet_files import jet_file_info, read_jets
from omnijet_lib.data.preprocessing import eta_rel, phi_rel, preprocess
from omnijet_lib.data.pythia_jets import jet_dataset
from omnijet_lib.notebooks import save_metrics, start_notebook
from omnijet_lib.observables import jet_observables
from omnijet_lib.plotting import compare_distributions, draw_jet, show_and_save

start_notebook()  # working directory: the project root, as in a headless run; mplhep style

# %% tags=["parameters"]
n_jets = 10_000  # jets per class (top, QCD); the paper's JetClass has 10^7 per class
seed = 1  # Pythia seeds of every chunk derive from it
n_workers = None  # generator processes; None: one per core
data_dir = "data/jets"  # generated files are cached here
output_dir = "figures/01_data"  # figures and metrics.json
n_jets_drawn = 3  # jets of each class drawn in the (eta_rel, phi_rel) plane

# %%
output_dir = Path(output_dir)
output_dir.mkdir(parents=True, exist_ok=True)
start = time.perf_counter()
paths = jet_dataset(n_jets, seed=seed, data_dir=data_dir, n_workers=n_workers)
print(f"dataset ready in {time.perf_counter() - start:.0f} s:", {p: str(f) for p, f in paths.items()})
info = {process: jet_file_info(path) for process, path in paths.items()}
jets = {process: read_jets(path) for process, path in paths.items()}
names = {"top": "top", "qcd": "QCD"}

# %% [markdown]
# ## Jet observables
# Computed from the constituents as massless particles, as every later notebook
# does for tokenized and generated jets (the generator's own jet mass includes
# hadron masses and differs by a few GeV for light jets).

# %%
observables = {process: jet_observables(j.constituents) for process, j in jets.items()}
histograms = {  # observable: (axis label, bins)
    "pt": (r"jet $p_\mathrm{T}$ [GeV]", np.linspace(450, 1050, 41)),
    "mass": (r"jet mass [GeV]", np.linspace(0, 300, 61)),
    "multiplicity": ("number of constituents", np.arange(0.5, 201.5, 4)),
    "tau21": (r"$\tau_{21}$", np.linspace(0, 1.2, 49)),
    "tau32": (r"$\tau_{32}$", np.linspace(0, 1.2, 49)),
}
for name, (xlabel, bins) in histograms.items():
    fig = compare_distributions({names[p]: observables[p][name] for p in jets}, bins=bins, xlabel=xlabel)
    show_and_save(fig, output_dir, f"jet_{name}")

# %% [markdown]
# ## Constituents
# Relative to the jet axis: η_rel = η − η_jet and φ_rel = φ − φ_jet (wrapped).

# %%
constituent = {}
for process, j in jets.items():
    flat = j.flat_constituents()
    jet_of = np.repeat(np.arange(len(j)), j.n_constituents)  # the jet each constituent belongs to
    constituent[process] = {
        "pt": flat["pt"],
        "eta_rel": eta_rel(flat["eta"], j.eta[jet_of]),
        "phi_rel": phi_rel(flat["phi"], j.phi[jet_of]),
    }
for name, xlabel, bins, logy in (
    ("pt", r"constituent $p_\mathrm{T}$ [GeV]", np.geomspace(0.1, 1000, 41), True),
    ("eta_rel", r"constituent $\eta_\mathrm{rel}$", np.linspace(-1, 1, 41), True),
    ("phi_rel", r"constituent $\phi_\mathrm{rel}$", np.linspace(-1, 1, 41), True),
):
    fig = compare_distributions({names[p]: constituent[p][name] for p in jets}, bins=bins, xlabel=xlabel, logy=logy)
    if name == "pt":
        fig.axes[0].set_xscale("log")
    show_and_save(fig, output_dir, f"constituent_{name}")

# %% [markdown]
# ## A few jets
# Marker area ∝ pT; red charged, grey neutral; the dashed circle is the jet radius.

# %%
fig, axes = plt.subplots(2, n_jets_drawn, figsize=(5 * n_jets_drawn, 10), squeeze=False)
for row, process in enumerate(jets):
    for col in range(n_jets_drawn):
        j = jets[process][col]
        c = j.constituents[0]
        draw_jet(
            eta_rel(np.asarray(c.eta), j.eta[0]), phi_rel(np.asarray(c.phi), j.phi[0]), np.asarray(c.pt),
            charge=np.asarray(c.charge), ax=axes[row, col],
            title=f"{names[process]}: m = {observables[process]['mass'][col]:.0f} GeV\n{len(c)} constituents",
        )  # fmt: skip
fig.tight_layout()
show_and_save(fig, output_dir, "jet_displays")

# %% [markdown]
# ## Summary written to `metrics.json`

# %%
in_top_window = {p: float(np.mean((o["mass"] > 140) & (o["mass"] < 200))) for p, o in observables.items()}
dropped = {p: preprocess(j).n_dropped for p, j in jets.items()}
metrics = {
    "n_jets": {p: len(j) for p, j in jets.items()},
    "generation_jets_per_worker_second": {p: info[p]["jets_per_worker_second"] for p in jets},
    "fraction_mass_140_200": in_top_window,
    "mean_tau21": {p: float(o["tau21"].mean()) for p, o in observables.items()},
    "mean_tau32": {p: float(o["tau32"].mean()) for p, o in observables.items()},
    "mean_multiplicity": {p: float(o["multiplicity"].mean()) for p, o in observables.items()},
    "fraction_constituents_dropped_by_preprocessing": {
        p: float(d.sum() / jets[p].n_constituents.sum()) for p, d in dropped.items()
    },
    "figures": sorted(f.name for f in output_dir.glob("*.png")),
}
save_metrics(metrics, output_dir)
print(json.dumps(metrics, indent=1))
