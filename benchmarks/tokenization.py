"""Tokenization throughput (jets/s, encode and decode), then the nearest-code search benchmark.

    .venv/bin/python benchmarks/tokenization.py [--n-jets 2000] [--device auto] [--seed 0]

Tokenizers at the paper's sizes (binned 21^3; unconditional MLP 3 x 128; conditional
NormFormer 4 blocks x 128, 8 heads; 8192 codes of dimension 4).  Weights are untrained:
the cost of a forward pass does not depend on them.  Jets are real Pythia top jets
(generated here once).  The second table is ``benchmarks/nearest_code.py``: time and
peak memory of the nearest-code search at 8192 and 65 536 codes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

from omnijet_lib.data.preprocessing import preprocess
from omnijet_lib.data.pythia_jets import generate_jets
from omnijet_lib.tokenizers.binned import BinnedTokenizer
from omnijet_lib.tokenizers.specs import build_tokenizer
from omnijet_lib.training import pick_device


def best_of(fn, repeats: int) -> float:
    """Shortest wall time of ``repeats`` runs after one warm-up (the first run on a machine is slow)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jets", type=int, default=2000, help="top jets tokenized per timing")
    parser.add_argument("--tokenizers", nargs="+", default=["binned-21", "unconditional-8192", "conditional-8192"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-search", action="store_true", help="only the throughput table")
    args = parser.parse_args()
    device = pick_device(args.device)
    torch.manual_seed(args.seed)

    jets = generate_jets("top", args.n_jets, seed=args.seed + 1, progress=False)
    data = preprocess(jets)
    print(
        f"tokenization throughput: {len(jets)} top jets, {data.mask.sum(1).mean():.1f} constituents each, device {device}, torch {torch.__version__}"
    )
    print(f"{'tokenizer':<22}{'tokens':>8}{'encode jets/s':>15}{'decode jets/s':>15}")
    for spec in args.tokenizers:
        tokenizer = build_tokenizer(spec, device=str(device))
        if isinstance(tokenizer, BinnedTokenizer):  # a grid needs its ranges; a VQ-VAE runs untrained
            tokenizer.fit(data.features, data.mask)
        tokens = tokenizer.encode(data.features, data.mask)
        encode = best_of(lambda t=tokenizer: t.encode(data.features, data.mask), args.repeats)
        decode = best_of(lambda t=tokenizer, tok=tokens: t.decode(tok, data.mask), args.repeats)
        print(f"{spec:<22}{tokenizer.codebook_size:>8}{len(jets) / encode:>15.0f}{len(jets) / decode:>15.0f}")

    if not args.skip_search:
        print()
        search = Path(__file__).with_name("nearest_code.py")
        subprocess.run([sys.executable, str(search), "--device", args.device, "--seed", str(args.seed)], check=True)


if __name__ == "__main__":
    main()
