"""Generation fidelity against training jet-epochs, codebook size and the multiplicity token, over seeds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generation_fidelity.py \\
        --tokenizers conditional-512 --n-train 12000 48000 --epochs 5 10 \\
        --multiplicity-token 0 1 --seeds 1 2 --jobs 2 -p n_jets 40000

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
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from itertools import product
from pathlib import Path

import numpy as np

from omnijet_lib.notebooks import parse_parameter, project_root

NOTEBOOK = "notebooks/04_generation.py"
RATIOS = ("multiplicity", "jet_mass", "jet_tau21", "jet_tau32")


def point_name(tokenizer: str, n_train: int, epochs: int, multiplicity_token: bool, seed: int) -> str:
    return f"{tokenizer}_n{n_train}_e{epochs}_m{int(multiplicity_token)}_s{seed}"


def run_point(name: str, parameters: dict, args) -> dict:
    """Notebook 04 at one grid point, or its stored metrics if it ran before."""
    out = Path(args.out) / name
    metrics_file = out / "metrics.json"
    if not metrics_file.exists():
        command = [sys.executable, "-m", "omnijet_lib.cli", "run-notebook", NOTEBOOK, "--output-dir", str(out)]
        command += ["--profile", args.profile] if args.profile else []
        for key, value in parameters.items():
            command += ["-p", key, json.dumps(value)]
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "run.log", "w") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=project_root())
        if code:
            print(f"{name}: notebook failed (exit {code}), see {out / 'run.log'}", file=sys.stderr)
            return {}
    return json.loads(metrics_file.read_text())


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
    parser.add_argument("--n-train", nargs="+", type=int, required=True, help="training jets (top + QCD)")
    parser.add_argument("--epochs", nargs="+", type=int, default=[10])
    parser.add_argument("--multiplicity-token", nargs="+", type=int, choices=[0, 1], default=[0, 1])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--profile", default=None, help="notebook 04's parameter profile (default: its defaults)")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="figures/fidelity")
    parser.add_argument("--table", default=None, help="also write the table (markdown) here")
    args = parser.parse_args()
    if args.jobs > 1 and os.environ.get("OMP_NUM_THREADS") is None:
        print("warning: --jobs > 1 without OMP_NUM_THREADS=1: the runs will fight over the cores", file=sys.stderr)

    fixed = {name: parse_parameter(value) for name, value in args.p}
    groups = list(product(args.tokenizers, args.n_train, args.epochs, args.multiplicity_token))
    points = []
    for (tokenizer, n_train, epochs, multiplicity), seed in product(groups, args.seeds):
        name = point_name(tokenizer, n_train, epochs, bool(multiplicity), seed)
        parameters = fixed | {
            "tokenizer": tokenizer, "n_train": n_train, "epochs": epochs, "multiplicity_token": bool(multiplicity),
            "train_seed": seed, "run_dir": f"runs/fidelity/{name}", "generated_dir": "data/fidelity/generated",
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
