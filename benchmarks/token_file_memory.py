"""Memory (RSS) and speed of GPT training that streams its sequences from a token file, 10^5 to 5*10^6 sequences.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/token_file_memory.py [--sizes 100000 1000000 5000000]
        [--memory-sizes 100000 1000000] [--steps 300] [--dir DIR] [--keep]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/token_file_memory.py --quick   # smoke test: 1000 and 3000 rows

The token files are real rows, tiled.  Generating 5*10^6 Pythia jets is out of
reach here (~180 jets/s), so ``--jets`` real Pythia jets per class (top and QCD,
``omnijet_lib.data.pythia_jets``, reused from ``data/jets`` when there) are
tokenized by a binned tokenizer of 8^3 = 512 codes fitted on them, and a file of
N sequences repeats those rows (row i is real row i mod n_real).  Reading cost and
memory depend on the file's size and layout, not on which jets the rows hold.

Each measurement runs in a fresh process, ``fit_gpt`` of a small GPT on the
notebooks' 60/20/20 split (``split_indices``), stopped after ``--steps`` optimizer
steps:

    streamed   TokenDataset(file).rows(train), .rows(validation): batches read from disk
    in memory  read_token_file(file).sequences indexed by the split, as the notebooks did

Reported: peak RSS (``ru_maxrss``), VmRSS and RssAnon at the end (``/proc/self/status``),
the set-up before the first step (lengths, vocabulary checks, or reading the file),
seconds per step, and the time to read a random batch of 64 rows.  Files go to
``--dir`` (a temporary folder by default) and are removed unless ``--keep``.
``--quick`` tiles 50 real jets per class to 1000 rows (streamed and in memory) and
3000 (streamed), 3 steps each; its Pythia jets go to the temporary folder too
unless ``--jet-dir`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BATCH_SIZE = 64


# ----------------------------------------------------------------------------- the token files


def real_token_files(n_jets: int, seed: int, jet_dir: Path, out_dir: Path):
    """Token files of ``n_jets`` real Pythia top and QCD jets each, and the tokenizer that made them."""
    from omnijet_lib.data.jet_files import read_jets
    from omnijet_lib.data.jets import concatenate
    from omnijet_lib.data.preprocessing import preprocess
    from omnijet_lib.data.pythia_jets import jet_dataset
    from omnijet_lib.tokenizers import BinnedConfig, BinnedTokenizer
    from omnijet_lib.tokenizers.token_files import tokenize_file

    jet_files = jet_dataset(n_jets, seed=seed, data_dir=jet_dir)
    pre = preprocess(concatenate([read_jets(path) for path in jet_files.values()]))
    tokenizer = BinnedTokenizer(BinnedConfig((8, 8, 8))).fit(pre.features, pre.mask)
    paths = [
        tokenize_file(path, tokenizer, out_dir / f"real_{process}.h5", progress=False)
        for process, path in jet_files.items()
    ]
    return paths, tokenizer


def tiled_token_file(real_paths, tokenizer, n: int, out_path: Path, *, chunk: int = 100_000) -> Path:
    """A token file of ``n`` sequences repeating the rows of ``real_paths`` (written by the project's writer)."""
    from omnijet_lib.tokenizers.token_dataset import TokenDataset
    from omnijet_lib.tokenizers.token_files import write_token_file

    with TokenDataset(real_paths, progress=False) as dataset:
        real = dataset.read(np.arange(len(dataset)))
    tokens, mask = real.tokens(max_length=tokenizer.preprocessing.sequence_length)

    def chunks():
        for start in range(0, n, chunk):
            rows = np.arange(start, min(n, start + chunk)) % len(real)
            yield tokens[rows], mask[rows], {name: values[rows] for name, values in real.columns.items()}

    return write_token_file(
        out_path, chunks(), n=n, content="jets", tokenizer=tokenizer,
        source=f"tiled from {len(real)} real Pythia jets", progress=True,
    )  # fmt: skip


# ----------------------------------------------------------------------------- one measurement (a fresh process)


class EnoughSteps(Exception):
    """Raised from on_step to end a run after the steps to be timed."""


def memory_now() -> dict[str, float]:
    """Peak and current resident memory of this process, MB."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    now = {key: int(status[key].split()[0]) / 1024 for key in ("VmRSS", "RssAnon", "RssFile")}
    return {"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **now}


def measure(mode: str, path: Path, steps: int, run_dir: Path) -> dict:
    """Train a small GPT on ``path`` for ``steps`` steps, streamed or in memory; time and memory."""
    import torch

    from omnijet_lib.data.splits import split_indices
    from omnijet_lib.models.gpt import GPTConfig
    from omnijet_lib.tokenizers.token_dataset import TokenDataset
    from omnijet_lib.tokenizers.token_files import read_token_file
    from omnijet_lib.training import TrainingConfig
    from omnijet_lib.training.gpt import fit_gpt

    torch.set_num_threads(1)
    after_imports = memory_now()["VmRSS"]
    started = time.perf_counter()
    dataset = TokenDataset(path, progress=False)
    train_idx, val_idx, _ = split_indices(len(dataset), seed=1)
    if mode == "streamed":
        train, val = dataset.rows(train_idx), dataset.rows(val_idx)
    else:
        sequences = read_token_file(path).sequences  # kept, as in the notebooks
        train, val = sequences[train_idx], sequences[val_idx]
    config = GPTConfig(
        codebook_size=dataset.codebook_size, embed_dim=64, n_heads=4, n_blocks=2, ffn_dim=128, max_length=dataset.width
    )
    training = TrainingConfig(epochs=1, batch_size=BATCH_SIZE, seed=0, device="cpu", checkpoint_every=10**9)
    step_times = []

    def on_step(step: int) -> None:
        step_times.append(time.perf_counter())
        if step == steps:
            raise EnoughSteps

    try:
        fit_gpt(config, train, val, training, run_dir, progress=False, on_step=on_step)
    except EnoughSteps:
        pass
    memory = memory_now()
    rng = np.random.default_rng(0)
    reads = []
    for _ in range(50):
        batch = rng.choice(len(train), BATCH_SIZE, replace=False)
        start = time.perf_counter()
        train[batch]
        reads.append(time.perf_counter() - start)
    return memory | {
        "after_imports": after_imports,
        "setup_seconds": step_times[0] - started,
        "step_seconds": (step_times[-1] - step_times[0]) / (len(step_times) - 1),
        "read_ms": 1e3 * float(np.median(reads)),
    }


def run_fresh(mode: str, path: Path, steps: int, run_dir: Path) -> dict:
    """:func:`measure` in a new interpreter, so that no earlier measurement's memory counts."""
    command = [sys.executable, __file__, "--worker", mode, str(path), "--steps", str(steps), "--dir", str(run_dir)]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        sys.exit(f"{mode} run on {path} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


# ----------------------------------------------------------------------------- the table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[100_000, 1_000_000], help="also in memory")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps timed per run")
    parser.add_argument("--jets", type=int, default=1000, help="real Pythia jets per class (top, QCD)")
    parser.add_argument("--seed", type=int, default=1, help="of the Pythia jets")
    parser.add_argument("--jet-dir", type=Path, default=None, help="where the Pythia jet files are (data/jets)")
    parser.add_argument("--dir", type=Path, default=None, help="for the token files (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the token files")
    parser.add_argument("--quick", action="store_true", help="small settings: a smoke test in well under a minute")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.memory_sizes, args.steps, args.jets = [1000, 3000], [1000], 3, 50
    if args.worker:
        mode, path = args.worker
        with tempfile.TemporaryDirectory(dir=args.dir) as run_dir:
            print(json.dumps(measure(mode, Path(path), args.steps, Path(run_dir) / "gpt")))
        return

    out_dir = Path(tempfile.mkdtemp(prefix="token_file_memory_", dir=args.dir))
    if args.jet_dir is None:  # --quick: not into the repository's data/
        args.jet_dir = out_dir / "jets" if args.quick else Path("data/jets")
    try:
        real_paths, tokenizer = real_token_files(args.jets, args.seed, args.jet_dir, out_dir)
        n_real = 2 * args.jets
        print(f"token files: {n_real} real Pythia jets (top + QCD, seed {args.seed}), binned tokenizer of 512 codes,")
        print(f"rows tiled to each size; GPT 2 blocks x 64, batch {BATCH_SIZE}, {args.steps} steps, one thread")
        print(f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; files in {out_dir}\n")
        header = f"{'sequences':>10} {'mode':>9} {'file MB':>8} {'peak RSS':>9} {'VmRSS':>7} {'RssAnon':>8} "
        print(header + f"{'set-up s':>9} {'s/step':>7} {'64-row read ms':>15}")
        for n in args.sizes:
            path = tiled_token_file(real_paths, tokenizer, n, out_dir / f"tokens_{n}.h5")
            for mode in ("streamed", "in memory") if n in args.memory_sizes else ("streamed",):
                r = run_fresh(mode.replace(" ", "_"), path, args.steps, out_dir)
                print(
                    f"{n:>10} {mode:>9} {path.stat().st_size / 2**20:>8.0f} {r['peak_rss']:>9.0f} {r['VmRSS']:>7.0f} "
                    f"{r['RssAnon']:>8.0f} {r['setup_seconds']:>9.1f} {r['step_seconds']:>7.3f} {r['read_ms']:>15.2f}",
                    flush=True,
                )
            if not args.keep:
                path.unlink()
        print(f"\nmemory in MB; a fresh process holds ~{r['after_imports']:.0f} MB after its imports")
        print(f"load average at end {os.getloadavg()[0]:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(out_dir)


if __name__ == "__main__":
    main()
