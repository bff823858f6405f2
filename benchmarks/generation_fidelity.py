"""Generation fidelity against training jet-epochs, codebook size and the multiplicity token, over seeds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generation_fidelity.py \\
        --tokenizers conditional-512 --n-train 12000 48000 --epochs 5 10 \\
        --multiplicity-token 0 1 --seeds 1 2 --jobs 2 -p n_jets 40000
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generation_fidelity.py --quick   # smoke test, ~2 minutes

Every point of the grid is one run of notebook 04 (as ``omnijet run-notebook`` runs it),
with ``tokenizer``, ``n_train``, ``epochs``, ``multiplicity_token`` and ``train_seed`` set
and everything else from ``--profile`` and ``-p``; it writes to ``<out>/<point>/`` (figures,
``metrics.json``) and ``runs/fidelity/<point>/``.  A point whose ``metrics.json`` exists is
read back, not run again, so the study can be stopped and continued, or extended.  The
tokenizers must have been trained by notebook 02 on the same ``n_jets`` and ``seed``.

``--jobs 2`` runs two points at once; with ``OMP_NUM_THREADS=1`` each then has one core
(torch's default of two threads per process is several times slower when two compete).
The table gives, per grid point, the mean and the standard deviation over the seeds of the
classifier-test AUC (generated vs reconstructed real jets, top + QCD), of the generated
over real means of multiplicity, mass, tau21 and tau32, of W1m [GeV], and the training time
[min, wall clock: state the load it ran under].  Jet-epochs = training jets x epochs.

``--quick`` runs one point (``conditional-32``, 40 training jets, 2 epochs, multiplicity
token, seed 1) with the tiny parameters of notebook 04's test (60 jets per class, a GPT of
one block x 16) after notebook 02 has trained that tokenizer on the same jets, all in a
temporary folder (``--out`` and ``-p`` can still name folders): a smoke test of the study.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from itertools import product
from pathlib import Path

import numpy as np

from omnijet_lib.notebooks import notebook_parameters, parse_parameter, project_root, read_profile

NOTEBOOK = "notebooks/04_generation.py"
TOKENIZER_NOTEBOOK = "notebooks/02_tokenization_quality.py"
RATIOS = ("multiplicity", "jet_mass", "jet_tau21", "jet_tau32")
# --quick: one grid point, and notebook 04's (and 02's) tiny parameters from tests/test_notebooks.py
QUICK_GRID = {"tokenizers": ["conditional-32"], "n_train": [40], "epochs": [2], "multiplicity_token": [1], "seeds": [1]}
QUICK_PARAMETERS = {
    "n_jets": 60, "embed_dim": 16, "n_heads": 2, "n_blocks": 1, "ffn_dim": 32,
    "classifier_epochs": 2, "monitor_jets": 30, "best_by": "sample_w1m",
}  # fmt: skip
QUICK_TOKENIZER_PARAMETERS = {"epochs": 2, "hidden_dim": 16, "classifiers": []}


def point_name(tokenizer: str, n_train: int, epochs: int, multiplicity_token: bool, seed: int) -> str:
    return f"{tokenizer}_n{n_train}_e{epochs}_m{int(multiplicity_token)}_s{seed}"


def run_point(name: str, parameters: dict, args) -> dict:
    """Notebook 04 at one grid point, or its stored metrics if it ran before."""
    out = Path(args.out) / name
    metrics_file = out / "metrics.json"
    if not metrics_file.exists():
        code = run_notebook(NOTEBOOK, parameters, out, args.profile)
        if code:
            print(f"{name}: notebook failed (exit {code}), see {out / 'run.log'}", file=sys.stderr)
            return {}
    return json.loads(metrics_file.read_text())


def run_notebook(notebook: str, parameters: dict, out: Path, profile: str | None) -> int:
    """``omnijet run-notebook`` in a subprocess, its output in ``<out>/run.log``; returns its exit code."""
    command = [sys.executable, "-m", "omnijet_lib.cli", "run-notebook", notebook, "--output-dir", str(out)]
    command += ["--profile", profile] if profile else []
    for key, value in parameters.items():
        command += ["-p", key, json.dumps(value)]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "run.log", "w") as log:
        return subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=project_root())


def quick_tokenizers(fixed: dict, args, work: Path) -> None:
    """--quick: notebook 02 trains the grid's tokenizers on notebook 04's jets, unless they are there."""
    profile = read_profile(args.profile, NOTEBOOK) if args.profile else {}
    parameters = notebook_parameters(project_root() / NOTEBOOK) | profile | fixed
    folder, seed = Path(parameters["tokenizer_dir"]), parameters["seed"]
    missing = [spec for spec in args.tokenizers if not (folder / f"{spec}_seed{seed}.pt").exists()]
    if missing:
        names = ("n_jets", "seed", "data_dir", "tokenizer_dir")
        tiny = QUICK_TOKENIZER_PARAMETERS | {name: parameters[name] for name in names} | {"tokenizers": missing}
        out = work / "02_tokenization_quality"
        code = run_notebook(TOKENIZER_NOTEBOOK, tiny | {"run_dir": str(work / "runs" / "02")}, out, None)
        if code:
            sys.exit(f"notebook 02 (the tokenizers) failed (exit {code}), see {out / 'run.log'}")


def summary(metrics: list[dict]) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation over seeds of what the table shows."""
    values = {
        "auc": [m["classifier"]["auc"] for m in metrics],
        **{name: [m["mean_ratios"][name] for m in metrics] for name in RATIOS},
        "w1m": [m["jetnet_metrics"].get("generated vs real", {}).get("w1m", {}).get("value", np.nan) for m in metrics],
        # from the epochs' own times: a point whose training was done before (resumed) still counts it
        "minutes": [sum(r["seconds"] for r in m["training"]["history"]) / 60 for m in metrics],
    }
    return {k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")) for k, v in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizers", nargs="+", default=["conditional-512"])
    parser.add_argument("--n-train", nargs="+", type=int, help="training jets (top + QCD); required unless --quick")
    parser.add_argument("--epochs", nargs="+", type=int, default=[10])
    parser.add_argument("--multiplicity-token", nargs="+", type=int, choices=[0, 1], default=[0, 1])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--profile", default=None, help="notebook 04's parameter profile (default: its defaults)")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default=None, help="default figures/fidelity (--quick: a temporary folder)")
    parser.add_argument("--table", default=None, help="also write the table (markdown) here")
    parser.add_argument("--quick", action="store_true", help="one tiny point in a temporary folder: a smoke test")
    args = parser.parse_args()
    if args.quick:
        vars(args).update(QUICK_GRID, jobs=1)
        with tempfile.TemporaryDirectory(prefix="fidelity_quick_") as work:
            study(args, Path(work))
    elif args.n_train is None:
        parser.error("the following arguments are required: --n-train")
    else:
        study(args, None)


def study(args: argparse.Namespace, work: Path | None) -> None:
    """The grid's points (run or read back), then the table; ``work``: --quick's temporary folder."""
    if args.jobs > 1 and os.environ.get("OMP_NUM_THREADS") is None:
        print("warning: --jobs > 1 without OMP_NUM_THREADS=1: the runs will fight over the cores", file=sys.stderr)

    fixed = {name: parse_parameter(value) for name, value in args.p}
    if work is None:
        args.out = args.out or "figures/fidelity"
        run_root, generated_dir = Path("runs/fidelity"), "data/fidelity/generated"
    else:  # nothing in the repository's data/, runs/ or figures/ unless -p or --out name them
        args.out = args.out or str(work / "out")
        run_root, generated_dir = work / "runs" / "fidelity", str(work / "data" / "fidelity" / "generated")
        folders = {"data_dir": "jets", "tokenizer_dir": "tokenizers", "token_dir": "tokens"}
        fixed = QUICK_PARAMETERS | {name: str(work / "data" / folder) for name, folder in folders.items()} | fixed
        quick_tokenizers(fixed, args, work)
    groups = list(product(args.tokenizers, args.n_train, args.epochs, args.multiplicity_token))
    points = []
    for (tokenizer, n_train, epochs, multiplicity), seed in product(groups, args.seeds):
        name = point_name(tokenizer, n_train, epochs, bool(multiplicity), seed)
        parameters = fixed | {
            "tokenizer": tokenizer, "n_train": n_train, "epochs": epochs, "multiplicity_token": bool(multiplicity),
            "train_seed": seed, "run_dir": str(run_root / name), "generated_dir": generated_dir,
        }  # fmt: skip
        points.append((name, parameters))
    with ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip([n for n, _ in points], pool.map(lambda p: run_point(*p, args), points)))

    header = "| tokenizer | training jets | epochs | jet-epochs | multiplicity token | seeds | AUC | "
    header += " | ".join(f"{r} ratio" for r in RATIOS) + " | W1m [GeV] | training [min] |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for tokenizer, n_train, epochs, multiplicity in groups:
        done = [results[point_name(tokenizer, n_train, epochs, bool(multiplicity), s)] for s in args.seeds]
        done = [m for m in done if m]
        if not done:
            continue
        s = summary(done)
        cells = [f"{s[k][0]:.3f} ± {s[k][1]:.3f}" for k in ("auc", *RATIOS)]
        cells += [f"{s['w1m'][0]:.2f} ± {s['w1m'][1]:.2f}", f"{s['minutes'][0]:.0f}"]
        row = [tokenizer, str(n_train), str(epochs), f"{n_train * epochs:.2g}", "yes" if multiplicity else "no"]
        lines.append("| " + " | ".join([*row, str(len(done)), *cells]) + " |")
    table = "\n".join(lines)
    print(table)
    if args.table:
        Path(args.table).write_text(table + "\n")


if __name__ == "__main__":
    main()
