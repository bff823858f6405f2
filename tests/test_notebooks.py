"""Every notebook runs headless with tiny parameters and writes its figures and metrics."""

import json
from pathlib import Path

import numpy as np
import pytest

from omnijet_lib.checkpoints import load_checkpoint
from omnijet_lib.errors import UnknownParameterError
from omnijet_lib.notebooks import notebook_parameters, run_notebook

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.py"))
NOTEBOOKS_BY_STEM = {nb.stem: nb for nb in NOTEBOOKS}

# Tiny parameters per notebook; a notebook missing here fails test_every_notebook_is_tested.
TINY_VQ = ["binned-5", "unconditional-32", "conditional-32"]
TINY = {
    "01_data": {"n_jets": 40, "n_jets_drawn": 2},
    "02_tokenization_quality": {
        "n_jets": 60,
        "tokenizers": TINY_VQ,
        "epochs": 2,
        "hidden_dim": 16,
        "classifier_epochs": 1,
        "n_processes": 2,  # the VQ-VAEs train under torchrun (2 gloo processes), the notebook reads the runs
    },
    "03_token_space": {"n_jets": 60, "tokenizers": TINY_VQ, "n_contexts": 40, "n_tokens_shown": 3},
    "04_generation": {
        "n_jets": 60,
        "tokenizer": "conditional-32",
        "embed_dim": 16,
        "n_heads": 2,
        "n_blocks": 1,
        "ffn_dim": 32,
        "epochs": 2,
        "classifier_epochs": 2,
        "monitor_jets": 30,
        "best_by": "sample_w1m",  # the monitor picks the epoch kept
        "n_train": 40,  # of the 72 jets of the training split
        "jet_pt_bins": 4,  # the jet pT token too (and notebook 05 then fine-tunes a backbone that reads it)
        "n_processes": 2,  # the GPT trains under torchrun (2 gloo processes), the notebook reads the finished run
    },
    "05_transfer_learning": {
        "n_jets": 60,
        "tokenizer": "conditional-32",
        "sizes": [10, 20],
        "seeds": [0],
        "max_epochs": 2,
        "n_val": 20,
        "n_test": 24,
        "n_processes": 2,  # every cell trained by 2 gloo processes under torchrun, the table then read
    },
    "06_calorimeter_showers": {
        "n_showers": 40,
        "tokenizer": "conditional-32",
        "vqvae_hidden_dim": 8,
        "vqvae_layers": 1,
        "vqvae_heads": 2,
        "vqvae_epochs": 1,
        "vqvae_batch_size": 8,
        "embed_dim": 16,
        "n_heads": 2,
        "n_blocks": 1,
        "ffn_dim": 32,
        "gpt_epochs": 1,
        "gpt_batch_size": 8,
        "n_generated": 8,
        "generation_batch_size": 4,
        "generation_precision": "bf16",  # sampled with bf16 products and cache: valid showers all the same
        "reference_points": 2,
        "n_processes": 2,  # VQ-VAE and GPT trained under torchrun (2 gloo processes), then read by the notebook
    },
    "07_direct_spatial_tokens": {
        "n_showers": 40,  # notebook 06's showers and models
        "variants": ["per_axis/energy", "per_axis/layer"],  # an untrained joint head rarely stops: 1700 hits
        "embed_dim": 16,
        "n_heads": 2,
        "n_blocks": 1,
        "ffn_dim": 32,
        "epochs": 1,
        "batch_size": 8,
        "n_per_slice": 4,
        "generation_batch_size": 4,
        "n_processes": 2,  # trained under torchrun (2 gloo processes), then read by the notebook
    },
    "08_hcal_pions": {
        "n_showers": 40,
        "embed_dim": 16,
        "n_heads": 2,
        "n_blocks": 1,
        "ffn_dim": 32,
        "epochs": 1,
        "batch_size": 8,
        "slice_energies": [10.0, 90.0],
        "n_per_slice": 4,
        "generation_batch_size": 4,
        "vqvae_model": True,  # notebook 06's VQ-VAE and GPT on the AHCAL grid too
        "tokenizer": "conditional-32",
        "vqvae_hidden_dim": 8,
        "vqvae_layers": 1,
        "vqvae_heads": 2,
        "vqvae_epochs": 1,
        "vqvae_batch_size": 8,
    },
    "09_cross_data": {
        "n_jets_a": 80,
        "n_jets": 40,  # notebook 01's jets
        "n_workers": 1,
        "tokenizer": "conditional-32",
        "hidden_dim": 8,
        "vq_blocks": 1,
        "vq_heads": 2,
        "tokenizer_epochs": 1,
        "embed_dim": 16,
        "n_heads": 2,
        "n_blocks": 1,
        "ffn_dim": 32,
        "pretrain_epochs": 1,
        "epochs": 1,
        "batch_size": 8,
        "sizes": [10, 20],
        "seeds": [0],
        "n_val": 10,
        "n_generated": 20,
        "classifier_epochs": 1,
        "tagging_sizes": [10],
        "tagging_epochs": 1,
    },
}
# Notebooks that read what an earlier one wrote (tokenizers, ...) run after it, in one shared data folder.
REQUIRES = {
    "03_token_space": "02_tokenization_quality",
    "04_generation": "02_tokenization_quality",
    "05_transfer_learning": "04_generation",
    "07_direct_spatial_tokens": "06_calorimeter_showers",
}


def test_every_notebook_is_tested():
    assert NOTEBOOKS, "no notebooks discovered"
    assert {nb.stem for nb in NOTEBOOKS} == set(TINY)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell(notebook, tmp_path):
    import papermill

    from omnijet_lib.notebooks import to_ipynb

    parameters = notebook_parameters(notebook)
    assert {"output_dir", "seed"} <= set(parameters)
    # papermill's own reading (`papermill --help-notebook`) skips a line it cannot parse, e.g. one
    # with a second "=" in its comment: it must list every parameter too
    assert set(papermill.inspect_notebook(to_ipynb(notebook, tmp_path / "nb.ipynb"))) == set(parameters)


def test_unknown_parameter_is_refused(tmp_path):
    with pytest.raises(UnknownParameterError) as err:
        run_notebook(NOTEBOOKS[0], parameters={"n_jet": 10}, output_dir=tmp_path)
    assert "'n_jet'" in str(err.value) and "'n_jets'" in str(err.value) and NOTEBOOKS[0].name in str(err.value)
    assert not list(tmp_path.iterdir()), "nothing runs with a bad parameter"


def in_shared_folders(stem: str, parameters: dict, shared: Path) -> dict:
    """``parameters`` of notebook ``stem`` with its data, run and output folders in ``shared``, one tree for a chain."""
    parameters = dict(parameters)
    names = notebook_parameters(NOTEBOOKS_BY_STEM[stem])
    folders = {"data_dir": "data", "tokenizer_dir": "tokenizers", "token_dir": "tokens", "generated_dir": "generated"}
    for name, folder in folders.items():
        if name in names:
            parameters[name] = str(shared / folder)
    for name in ("run_dir", "scan_dir"):
        if name in names:
            parameters[name] = str(shared / "runs" / stem)
    if "ecal_metrics" in names:  # notebook 07's results, there when it ran before in this chain
        parameters["ecal_metrics"] = str(shared / "out" / "07_direct_spatial_tokens" / "metrics.json")
    parameters["output_dir"] = str(shared / "out" / stem)
    return parameters


@pytest.fixture(scope="module")
def headless(tmp_path_factory):
    """Run a notebook (and what it requires, once) with TINY parameters; return its output folder."""
    shared = tmp_path_factory.mktemp("notebooks")
    done = {}

    def run(stem: str) -> Path:
        if stem in REQUIRES:
            run(REQUIRES[stem])
        if stem not in done:
            notebook = next(nb for nb in NOTEBOOKS if nb.stem == stem)
            parameters = in_shared_folders(stem, TINY[stem], shared)
            names = notebook_parameters(notebook)
            if "pretrained" in names:  # notebook 04's generative checkpoint
                parameters["pretrained"] = str(shared / "runs" / "04_generation" / "gpt" / "best.pt")
            if "vqvae_checkpoint" in names:  # notebook 06's shower tokenizer and GPT
                parameters["vqvae_checkpoint"] = str(shared / "runs" / "06_calorimeter_showers" / "gpt" / "best.pt")
                spec = TINY["06_calorimeter_showers"]["tokenizer"]
                parameters["vqvae_tokenizer"] = str(shared / "tokenizers" / f"showers_{spec}_seed1.pt")
            out = Path(parameters["output_dir"])
            executed = run_notebook(notebook, parameters=parameters, progress=False)
            assert executed.exists()
            done[stem] = out
        return done[stem]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_headless(notebook, headless):
    out = headless(notebook.stem)
    metrics = json.loads((out / "metrics.json").read_text())
    for figure in metrics["figures"]:
        assert (out / figure).stat().st_size > 10_000
    CHECKS[notebook.stem](metrics)
    # The executed notebook tells the whole story: every saved figure is shown inline too, and the last
    # cell shows no stray value (such as the number of characters a write returned).
    executed = json.loads((out / f"{notebook.stem}.ipynb").read_text())
    assert inline_images(executed) == len(metrics["figures"])
    last = [cell for cell in executed["cells"] if cell["cell_type"] == "code"][-1]
    assert not [o for o in last["outputs"] if o["output_type"] == "execute_result"]


def inline_images(notebook: dict) -> int:
    """PNG images among the cell outputs of an executed notebook (a widget's own output is not a cell output)."""
    return sum("image/png" in o.get("data", {}) for cell in notebook["cells"] for o in cell.get("outputs", []))


@pytest.mark.slow
def test_plain_papermill_runs_a_notebook_as_the_runner_does(headless, tmp_path):
    """Plain papermill, no MPLBACKEND, as a GPU batch job calls it: ten runs of the token explorer, none hangs.

    The list parameter comes as papermill's -p makes it, a string, and the rest from a -f file.
    """
    import os
    import subprocess
    import sys

    import yaml

    from omnijet_lib.notebooks import to_ipynb

    shared = headless("02_tokenization_quality").parent.parent
    source = to_ipynb(NOTEBOOKS_BY_STEM["03_token_space"], tmp_path / "03_token_space.ipynb")
    parameters = dict(TINY["03_token_space"], data_dir=str(shared / "data"), tokenizer_dir=str(shared / "tokenizers"))
    tokenizers = parameters.pop("tokenizers")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(parameters))
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    papermill = Path(sys.executable).parent / "papermill"
    for run in range(10):
        out = tmp_path / f"run{run}"
        out.mkdir()  # papermill writes into an existing folder
        command = [
            str(papermill), str(source), str(out / "executed.ipynb"), "-f", str(tmp_path / "tiny.yaml"),
            "-p", "tokenizers", json.dumps(tokenizers), "-p", "output_dir", str(out), "--no-progress-bar",
        ]  # fmt: skip
        # the working directory is not the project root: the notebook moves there itself
        done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        metrics = json.loads((out / "metrics.json").read_text())
        assert set(metrics["tokens_shown"]) == set(tokenizers)
        assert inline_images(json.loads((out / "executed.ipynb").read_text())) == len(metrics["figures"])


def _check_01_data(metrics):
    assert metrics["n_jets"] == {"top": 40, "qcd": 40}
    assert {"jet_mass.png", "jet_tau32.png", "constituent_eta_rel.png", "jet_displays.png"} <= set(metrics["figures"])
    assert metrics["fraction_mass_140_200"]["top"] > metrics["fraction_mass_140_200"]["qcd"]
    assert metrics["mean_tau32"]["top"] < metrics["mean_tau32"]["qcd"]
    assert all(rate > 0 for rate in metrics["generation_jets_per_worker_second"].values())


def _check_02_tokenization_quality(metrics):
    assert set(metrics["top_mass_sigma"]) == set(TINY_VQ)
    assert metrics["budget"]["n_processes"] == 2  # the VQ-VAEs were trained by two processes, then read
    for spec in ("unconditional-32", "conditional-32"):
        assert len(load_checkpoint(Path(metrics["run_dir"]) / spec / "last.pt")["process_rngs"]) == 2
    assert (metrics["budget"]["best_by"], metrics["budget"]["lr_schedule"]) == ("mse", "cosine")
    assert metrics["budget"]["jet_weight"] > 0  # the jet-level term is on by default
    assert all(sigma > 0 for sigma in metrics["top_mass_sigma"].values())
    for spec, by_source in metrics["top_mass_sigma_by_source"].items():  # all features: the headline's sigma
        assert set(by_source) == {"all", "pt", "angles"}
        assert by_source["all"] == pytest.approx(metrics["top_mass_sigma"][spec])
    assert metrics["codebook_size"] == {"binned-5": 125, "unconditional-32": 32, "conditional-32": 32}
    assert all(0 < u <= 1 for u in metrics["codebook_utilisation"].values())
    observables = {row["observable"] for row in metrics["resolution"]}
    assert {"pt", "eta_rel", "phi_rel", "jet_mass", "jet_pt", "jet_tau21", "jet_tau32"} <= observables
    assert {"resolution_top_jet_mass.png", "resolution_QCD_eta_rel.png"} <= set(metrics["figures"])
    assert set(metrics["lost_information"]) == {f"{t}/{m}" for t in TINY_VQ for m in ("deepsets", "transformer")}
    for path in metrics["tokenizer_files"].values():
        assert Path(path).exists()


def _check_03_token_space(metrics):
    assert set(metrics["tokens_shown"]) == set(TINY_VQ)
    assert all(len(tokens) == 3 for tokens in metrics["tokens_shown"].values())
    # context-free tokens decode to one point; conditional ones spread into blobs
    for spec in ("binned-5", "unconditional-32"):
        assert max(metrics["blob_spread"][spec].values()) < 1e-5
    assert metrics["blob_spread"]["conditional-32"]["eta_rel"] > 1e-4
    assert len(metrics["figures"]) == 3


def _check_04_generation(metrics):
    from omnijet_lib.data.jet_files import read_jets
    from omnijet_lib.metrics.distributions import wasserstein_distances
    from omnijet_lib.metrics.generation_quality import OBSERVABLES, jet_distributions

    assert metrics["n_jets"] == {"train": 40, "val": 24, "test": 24, "generated": 24}
    # a random subset of the split, both classes in it (its first 40 indices would be all top jets)
    assert set(metrics["train_classes"]) == {"Tbqq", "QCD"} and sum(metrics["train_classes"].values()) == 40
    assert min(metrics["train_classes"].values()) >= 10
    assert set(metrics["wasserstein"]) == set(OBSERVABLES)
    generated, reference = read_jets(metrics["generated_file"]), read_jets(metrics["reference_file"])
    # the distances are those of the two files it wrote (float32 on disk: a little rounding)
    redone = wasserstein_distances(jet_distributions(generated.constituents), jet_distributions(reference.constituents))
    assert redone == pytest.approx(metrics["wasserstein"], rel=1e-3, abs=1e-6)
    assert len(reference) == 24 and metrics["classifier"]["n_per_sample"] == min(len(generated), len(reference))
    assert np.isfinite(metrics["classifier"]["auc"])
    assert metrics["generation"]["ms_per_token"] > 0
    assert len(generated) == 24 - metrics["generation"]["n_empty_dropped"]
    assert (generated.n_constituents <= 128).all()
    assert {"learning_curve.png", "distribution_jet_mass.png", "generated_jets.png"} <= set(metrics["figures"])
    assert set(metrics["mean_ratios"]) == {"multiplicity", "jet_mass", "jet_tau21", "jet_tau32"}
    # the default model draws each jet's multiplicity first, and counts its constituents down: no STOP hazard
    assert metrics["gpt"]["multiplicity_token"] is True and metrics["gpt"]["count_down"] is True
    assert metrics["stop_probability"] == {"skipped": "the model draws the multiplicity first"}
    # the monitor's sample after every epoch, and the epoch kept is the one it liked best
    history = metrics["training"]["history"]
    assert "monitor.png" in metrics["figures"] and len(history) == 2
    assert history[metrics["training"]["best_epoch"]]["sample_w1m"] == min(r["sample_w1m"] for r in history)
    # 24 test jets: too few for FPD/KPD with errors (tested on their own in test_generation_metrics.py)
    assert "fewer than 20 jets" in metrics["jetnet_metrics"]["skipped"]
    assert all(ratio > 0 for ratio in metrics["mean_ratios"].values())
    assert (metrics["training"]["lr_schedule"], metrics["training"]["warmup"]) == ("cosine", 0.0)
    # four equally filled pT bins of the 40 training jets: three edges, increasing, inside the 500-1000 GeV window
    edges = metrics["gpt"]["jet_pt_edges"]
    assert len(edges) == 3 and edges == sorted(edges) and 450 < edges[0] and edges[-1] < 1050
    # trained by two processes (each one's RNG in the checkpoint), which the notebook then read
    assert metrics["training"]["n_processes"] == 2
    assert len(load_checkpoint(metrics["training"]["checkpoint"])["process_rngs"]) == 2


def _check_05_transfer_learning(metrics):
    cells = {(r["size"], r["strategy"], r["seed"]) for r in metrics["results"]}
    assert cells == {(n, s, 0) for n in (10, 20) for s in ("scratch", "finetune", "frozen")}
    # accuracy on the 24 test jets: a whole number of them (on any other set it would not be, in general)
    assert all(r["accuracy"] * 24 == pytest.approx(round(r["accuracy"] * 24)) for r in metrics["results"])
    assert all(np.isfinite(r["auc"]) for r in metrics["results"])
    assert metrics["n_jets"] == {"train_pool": 72, "val": 20, "test": 24}
    assert metrics["n_processes"] == 2
    assert set(metrics["figures"]) == {"accuracy_vs_size.png", "rejection_50_vs_size.png", "rejection_30_vs_size.png"}


def _check_06_calorimeter_showers(metrics):
    from omnijet_lib.data.shower_files import read_showers
    from omnijet_lib.shower_observables import SHOWER_OBSERVABLES

    assert metrics["n_showers"] == {"train": 24, "val": 8, "test": 8, "generated": 8}
    assert metrics["n_processes"] == 2
    assert metrics["simulation_showers_per_second"] > 0
    assert metrics["tokenizer"]["n_features"] == 4 and metrics["tokenizer"]["quantizer"]["codebook_size"] == 32
    assert set(metrics["token_resolution"]) == {"x", "y", "z", "energy"}
    assert all(r["sigma"] > 0 for r in metrics["token_resolution"].values())  # an untrained tokenizer loses a lot
    for sample in ("tokenized", "generated"):
        assert set(metrics["wasserstein"][sample]) == set(SHOWER_OBSERVABLES)
    assert metrics["gpt"]["max_length"] == 1702
    speed = metrics["generation"]
    assert speed["seconds_per_shower"] > 0 and speed["reference_seconds_per_shower"] > 0
    generated = read_showers(metrics["generated_file"])
    assert len(generated) == 8 - speed["n_empty_dropped"]
    assert generated.max_hits <= 1700 and np.all(generated.incident_energy == 0)
    assert {"token_resolution.png", "distribution_longitudinal_profile.png", "generated_showers.png"} <= set(
        metrics["figures"]
    )


def _check_07_direct_spatial_tokens(metrics):
    from omnijet_lib.data.shower_files import read_showers
    from omnijet_lib.shower_observables import SHOWER_OBSERVABLES

    variants = ["per_axis/energy", "per_axis/layer"]
    assert set(metrics["models"]) == set(variants)
    # trained by two processes under torchrun (each one's RNG in the checkpoint), then read by the notebook
    assert metrics["n_processes"] == 2
    assert all(len(load_checkpoint(metrics["models"][v]["checkpoint"])["process_rngs"]) == 2 for v in variants)
    assert all(metrics["models"][v]["n_components"] == 4 for v in variants)
    assert all(metrics["models"][v]["order"] == v.partition("/")[2] for v in variants)  # each trained in its order
    # each order its energy strategy: the order statistic and the fitted hottest cell in energy order, the
    # energy budget (trained with a blurred anchor) in layer order; both bounded and rescaled
    assert [metrics["models"][v]["energy_strategy"] for v in variants] == [
        "largest_of_hits_left+fitted_hottest_cell+rescale_to_visible_energy",
        "bounded+energy_budget+rescale_to_visible_energy",
    ]
    assert [metrics["models"][v]["anchor_noise"] for v in variants] == [0.0, 0.05]
    assert set(metrics["wasserstein"]) == {*variants, "vqvae"}
    assert all(set(w) == set(SHOWER_OBSERVABLES) for w in metrics["wasserstein"].values())
    assert set(metrics["seconds_per_shower"]) == {*variants, "vqvae"}
    assert all(s > 0 for s in metrics["seconds_per_shower"].values())
    assert set(metrics["energy_slices"]) == set(variants)  # every direct model asked for fixed energies
    assert all([r["incident_energy"] for r in rows] == [10.0, 50.0, 90.0] for rows in metrics["energy_slices"].values())
    for rows in metrics["energy_slices"].values():  # rescaled: the chain's own sum is reported beside
        assert all(r["energy_sum_chain_mean_ratio"] > 0 for r in rows)
        simulated_sums = [r["energy_sum_simulated_mean"] for r in rows]  # a photon deposits more the harder it is
        assert simulated_sums == sorted(simulated_sums) and simulated_sums[-1] > 5 * simulated_sums[0]
    generated = read_showers(metrics["generated_file"])
    assert len(generated) == 8 - metrics["n_empty_dropped"]["per_axis/energy"]  # the first variant's showers
    assert np.all(generated.incident_energy > 0)  # asked for the test showers' energies
    assert {"energy_slices.png", "hit_energy_spectrum_fine.png", "distribution_n_hits.png"} <= set(metrics["figures"])
    below = metrics["fraction_of_hits_below_10_keV"]
    assert set(below) == {"simulated", "vqvae", "per_axis/energy"}
    assert 0 < below["simulated"] < 0.2  # the simulator's soft tail: a few per cent of its hits lie below 10 keV


def _check_08_hcal_pions(metrics):
    from omnijet_lib.data.geometry import AHCAL
    from omnijet_lib.data.shower_files import read_showers
    from omnijet_lib.shower_observables import SHOWER_OBSERVABLES

    assert metrics["particle"] == "pion" and metrics["geometry"] == "ahcal"
    assert read_showers(metrics["shower_file"]).geometry == AHCAL
    variants = ["per_axis/layer", "per_axis/energy"]
    assert list(metrics["models"]) == variants
    for variant in variants:
        model = metrics["models"][variant]
        assert model["geometry"]["name"] == "ahcal"  # vocabularies sized from the AHCAL: 48 layers, 30 x 30 tiles
        assert model["size_residuals"] == "empirical"  # hit count and visible energy keep the pions' low tail
    assert set(metrics["wasserstein"]) == {*variants, "vqvae"}
    assert all(set(w) == {*SHOWER_OBSERVABLES, "depth_profile_lambda"} for w in metrics["wasserstein"].values())
    # the ECAL column: notebook 07's main model's distances when it ran before in this chain, else none
    if Path(metrics["ecal_metrics"]).exists():
        assert set(metrics["wasserstein_ecal"]) == set(SHOWER_OBSERVABLES)
    else:
        assert metrics["wasserstein_ecal"] == {}
    assert set(metrics["energy_slices"]) == set(variants)
    rows = metrics["energy_slices"]["per_axis/layer"]
    assert [r["incident_energy"] for r in rows] == [10.0, 90.0]
    assert rows[1]["energy_sum_simulated_mean"] > 4 * rows[0]["energy_sum_simulated_mean"]  # pions: E_vis ~ E
    assert all(r["energy_sum_chain_mean_ratio"] > 0 for r in rows)
    assert 0.02 < metrics["calibration_gev_per_mev"] < 0.1
    generated = read_showers(metrics["generated_file"])
    assert generated.geometry == AHCAL and len(generated) == 8 - metrics["n_empty_dropped"]["per_axis/layer"]
    assert np.all(generated.z[generated.mask] <= AHCAL.n_layers - 1) and generated.z.max() > 29  # past the ECAL's 30
    assert {"depth_profile_lambda.png", "energy_slices.png", "distribution_longitudinal_profile.png"} <= set(
        metrics["figures"]
    )
    assert Path(metrics["vqvae_model"]["tokenizer"]).exists()


def _check_09_cross_data(metrics):
    from omnijet_lib.checkpoints import load_checkpoint as load

    assert metrics["n_jets"] == {"A": 80, "B": 80} and metrics["tokenizer_data"] == "a"
    assert Path(metrics["tokenizer"]).name == "dijet-conditional-32_seed1.pt"
    # every (size, strategy, seed) cell trained and scored; fine-tuned runs started from A's GPT
    cells = {(r["size"], r["strategy"], r["seed"]) for r in metrics["runs"]}
    assert cells == {(n, s, 0) for n in (10, 20) for s in ("scratch", "finetune", "frozen")}
    assert all(0.0 <= r["auc"] <= 1.0 and r["w1m"] >= 0 and r["n_generated"] > 0 for r in metrics["runs"])
    # FPD too, NaN where a tiny sample has too few jets for it (the real floor here: 10 validation jets)
    assert all("fpd" in r and "fpd_error" in r for r in metrics["runs"])
    assert metrics["real_floor"]["w1m"] >= 0 and np.isnan(metrics["real_floor"]["fpd"])
    assert 0 < metrics["real_test_top_fraction"] < 1  # drawn from the whole test split, not its first (top) jets
    runs = Path(metrics["pretrained"]).parent.parent.parent  # <run_dir>/pretrain_a/gpt/best.pt
    for strategy in ("finetune", "frozen"):
        describe = load(runs / f"b10_{strategy}_seed0" / "gpt" / "best.pt")["describe"]
        assert describe["strategy"] == strategy and describe["init_from"] == metrics["pretrained"]
    assert set(metrics["summary"]) == {f"{s}/{n}" for s in ("scratch", "finetune", "frozen") for n in (10, 20)}
    assert {(r["size"], r["strategy"]) for r in metrics["tagging"]} == {
        (10, s) for s in ("scratch", "finetune", "frozen")
    }
    assert "cross_data_scan.png" in metrics["figures"]


CHECKS = {
    "01_data": _check_01_data,
    "02_tokenization_quality": _check_02_tokenization_quality,
    "03_token_space": _check_03_token_space,
    "04_generation": _check_04_generation,
    "05_transfer_learning": _check_05_transfer_learning,
    "06_calorimeter_showers": _check_06_calorimeter_showers,
    "07_direct_spatial_tokens": _check_07_direct_spatial_tokens,
    "08_hcal_pions": _check_08_hcal_pions,
    "09_cross_data": _check_09_cross_data,
}
