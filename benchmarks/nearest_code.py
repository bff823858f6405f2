"""Time and peak memory of a nearest-code search: ours (chunked) vs torch.cdist vs vector-quantize-pytorch.

    .venv/bin/python benchmarks/nearest_code.py [--n-vectors 19456] [--codebook-sizes 8192 65536]
    .venv/bin/python benchmarks/nearest_code.py --quick    # smoke test: 4096 vectors, K = 1024, one timed run

Each measurement runs in a fresh subprocess of this script, so that the peak resident set size
(``ru_maxrss``, the only peak that sees torch's CPU allocations) belongs to that one method; on
CUDA the peak is ``torch.cuda.max_memory_allocated``.  "peak MB" is the increase over the memory
held after the inputs are made (the search's own working memory).  Methods whose estimated
working memory exceeds ``--max-gb`` are skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from omnijet_lib.devices import pick_device

METHODS = {  # name -> estimated working memory in bytes per (vector x code) pair, float32
    "nearest_code (ours)": 0,  # bounded by the block (on the CPU a cache's worth, at most 2**24 distances), not by N x K
    "torch.cdist + argmin": 4,  # one (N, K) distance matrix
    "vector-quantize-pytorch": 16,  # (N, K) distances, their negation, an int64 and a float one-hot
}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def peak_bytes(device: str) -> int:
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    kilo = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kilo


def measure(method: str, k: int, args: argparse.Namespace) -> dict:
    """Runs in the subprocess: one method, one codebook size -> {"ms": ..., "peak_mb": ...}."""
    from omnijet_lib.tokenizers.quantizer import nearest_code

    torch.manual_seed(args.seed)
    x = torch.randn(args.n_vectors, args.dim, device=args.device)  # (N, D)
    codebook = torch.randn(k, args.dim, device=args.device)  # (K, D)
    if method == "nearest_code (ours)":
        run = lambda: nearest_code(x, codebook)[0]
    elif method == "torch.cdist + argmin":
        run = lambda: torch.cdist(x, codebook).argmin(1)
    else:
        from vector_quantize_pytorch import VectorQuantize

        vq = VectorQuantize(dim=args.dim, codebook_size=k).to(args.device).eval()
        vq.codebook = codebook
        run = lambda: vq(x[None])[1]

    synchronize(args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if args.device == "cuda" else peak_bytes(args.device)
    times = []
    with torch.no_grad():
        for i in range(args.repeats + 1):  # the first run is the warm-up
            start = time.perf_counter()
            run()
            synchronize(args.device)
            if i > 0:
                times.append(time.perf_counter() - start)
    return {"ms": 1e3 * statistics.median(times), "peak_mb": (peak_bytes(args.device) - before) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-vectors", type=int, default=19456, help="vectors to quantise (a batch of the VQ-VAE)")
    parser.add_argument("--codebook-sizes", type=int, nargs="+", default=[8192, 65536])
    parser.add_argument("--dim", type=int, default=4, help="code dimension")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up; the median is shown")
    parser.add_argument("--max-gb", type=float, default=8.0, help="skip a method whose estimated memory exceeds this")
    parser.add_argument("--quick", action="store_true", help="small settings: a smoke test in seconds")
    parser.add_argument("--measure", nargs=2, metavar=("METHOD", "K"), help=argparse.SUPPRESS)  # subprocess mode
    args = parser.parse_args()
    if args.quick:  # several row blocks of the chunked search still
        args.n_vectors, args.codebook_sizes, args.repeats = 4096, [1024], 1
    args.device = pick_device(args.device).type

    if args.measure:
        print(json.dumps(measure(args.measure[0], int(args.measure[1]), args)))
        return

    print(
        f"nearest-code search: N = {args.n_vectors} vectors, D = {args.dim}, device {args.device}, torch {torch.__version__}"
    )
    print(f"{'method':<26}{'K':>8}{'ms':>11}{'peak MB':>11}")
    results, notes = {}, []
    for k in args.codebook_sizes:
        for method, bytes_per_pair in METHODS.items():
            estimate_gb = bytes_per_pair * args.n_vectors * k / 2**30
            if estimate_gb > args.max_gb:
                print(f"{method:<26}{k:>8}{'skipped':>11}{'':>11}")
                notes.append(f"{method} at K = {k} skipped: needs ~{estimate_gb:.0f} GB by estimate (> --max-gb)")
                continue
            command = [sys.executable, __file__, "--measure", method, str(k)]
            command += ["--n-vectors", str(args.n_vectors), "--dim", str(args.dim), "--seed", str(args.seed)]
            command += ["--device", args.device, "--repeats", str(args.repeats)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"{method:<26}{k:>8}{'failed':>11}")
                notes.append(f"{method} at K = {k} failed:\n{done.stderr.strip()[-1000:]}")
                continue
            result = results[method, k] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{method:<26}{k:>8}{result['ms']:>11.1f}{result['peak_mb']:>11.0f}")
    for k in args.codebook_sizes:
        ours, cdist = results.get(("nearest_code (ours)", k)), results.get(("torch.cdist + argmin", k))
        if ours and cdist:
            print(f"K = {k}: speed of ours / speed of cdist + argmin = {cdist['ms'] / ours['ms']:.2f}")
    for note in notes:
        print("note:", note)


if __name__ == "__main__":
    main()
