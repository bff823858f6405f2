"""Tokenization throughput (jets/s, encode and decode), then the nearest-code search benchmark.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tokenization.py [--n-jets 2000] [--sizes paper cpu] [--device auto]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tokenization.py --quick   # smoke test: 50 jets, small codebooks

Method.  Real Pythia top jets (generated here once, ``--seed``) are pre-processed once; each
tokenizer then encodes all of them in one call (``Tokenizer.encode``: batches, network, nearest-code
search, back to tokens) and decodes the tokens again (``Tokenizer.decode``).  A time is the
shortest wall time of ``--repeats`` calls after one warm-up call; jets/s = jets / that time.  The
weights are untrained: the cost of a forward pass does not depend on them.  Pre-processing and
file I/O are not timed (a small share of ``tokenize_file``: profile it with cProfile).

Sizes are notebook 02's parameter profiles (``--sizes``; ``notebooks/profiles/<size>/``): "paper"
is the paper's VQ-VAEs (NormFormer 4 blocks x 128, 8 heads; MLP 3 x 128), "cpu" the notebook's
own defaults (2 blocks x 64, 4 heads; MLP 3 x 64).  The binned tokenizer has no size.  The header
states torch's threads and the machine's load average, as other jobs slow a timing down: quote
speeds with ``OMP_NUM_THREADS=1`` and the load.

The second table is ``benchmarks/nearest_code.py``: time and peak memory of the nearest-code
search at 8192 and 65 536 codes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import torch

from omnijet_lib.data.preprocessing import preprocess
from omnijet_lib.data.pythia_jets import generate_jets
from omnijet_lib.devices import pick_device
from omnijet_lib.generation.timing import best_of
from omnijet_lib.notebooks import notebook_parameters, project_root, read_profile
from omnijet_lib.tokenizers.binned import BinnedTokenizer
from omnijet_lib.tokenizers.specs import build_tokenizer, parse_spec
from omnijet_lib.tokenizers.vqvae import VQVAEConfig

NOTEBOOK = "notebooks/02_tokenization_quality.py"


def vqvae_size(profile: str) -> dict[str, VQVAEConfig]:
    """Notebook 02's VQ-VAE configs under a parameter profile, by kind, built as the notebook builds them."""
    parameters = notebook_parameters(project_root() / NOTEBOOK) | read_profile(profile, NOTEBOOK)
    config = VQVAEConfig(hidden_dim=parameters["hidden_dim"], n_heads=parameters["n_heads"])
    return {
        "conditional": replace(config, n_layers=parameters["n_blocks"]),
        "unconditional": replace(config, n_layers=parameters["mlp_layers"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jets", type=int, default=2000, help="top jets tokenized per timing")
    parser.add_argument(
        "--tokenizers", nargs="+", default=["binned-21", "unconditional-8192", "conditional-8192", "conditional-512"]
    )
    parser.add_argument("--sizes", nargs="+", default=["paper", "cpu"], help="notebook 02 profiles giving VQ-VAE sizes")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-search", action="store_true", help="only the throughput table")
    parser.add_argument("--quick", action="store_true", help="small settings, nearest_code.py --quick: a smoke test")
    args = parser.parse_args()
    if args.quick:  # every kind of tokenizer at both sizes, small codebooks, one timed call
        args.n_jets, args.tokenizers, args.repeats = 50, ["binned-5", "unconditional-32", "conditional-32"], 1
    device = pick_device(args.device)
    torch.manual_seed(args.seed)

    jets = generate_jets("top", args.n_jets, seed=args.seed + 1, progress=False)
    data = preprocess(jets)
    print(
        f"tokenization throughput: {len(jets)} top jets, {data.mask.sum(1).mean():.1f} constituents each, "
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    print(f"{'tokenizer':<22}{'size':<8}{'tokens':>8}{'encode jets/s':>15}{'decode jets/s':>15}")
    sizes = {size: vqvae_size(size) for size in args.sizes}
    for spec in args.tokenizers:
        kind, _ = parse_spec(spec)
        for size in ["-"] if kind == "binned" else args.sizes:
            vqvae = sizes[size][kind] if kind != "binned" else VQVAEConfig()
            tokenizer = build_tokenizer(spec, vqvae=vqvae, device=str(device))
            if isinstance(tokenizer, BinnedTokenizer):  # a grid needs its ranges; a VQ-VAE runs untrained
                tokenizer.fit(data.features, data.mask)
            tokens = tokenizer.encode(data.features, data.mask)
            encode = best_of(lambda t=tokenizer: t.encode(data.features, data.mask), args.repeats, device)
            decode = best_of(lambda t=tokenizer, tok=tokens: t.decode(tok, data.mask), args.repeats, device)
            rates = f"{len(jets) / encode:>15.0f}{len(jets) / decode:>15.0f}"
            print(f"{spec:<22}{size:<8}{tokenizer.codebook_size:>8}{rates}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")

    if not args.skip_search:
        print()
        search = Path(__file__).with_name("nearest_code.py")
        command = [sys.executable, str(search), "--device", args.device, "--seed", str(args.seed)]
        subprocess.run(command + (["--quick"] if args.quick else []), check=True)


if __name__ == "__main__":
    main()
