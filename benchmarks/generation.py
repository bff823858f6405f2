"""Generation speed: the reference method (no cache) vs ``generate_batch``, the arithmetic floor, and showers per second.

    .venv/bin/python benchmarks/generation.py [--device auto] [--seed 0] [--batches 1 64 512]
    .venv/bin/python benchmarks/generation.py --threads 1 --batches 64 512 --precisions fp32 bf16  # issue's targets
    .venv/bin/python benchmarks/generation.py --quick          # smoke test, under a minute

Three cases, side by side in one run: jets and VQ-token showers with the paper's GPT, and
the direct-token shower model of notebook 07 at the notebook's size.  ``--precisions``
times (b) in each precision given (bf16: matrix products, output layer and key/value
cache in bfloat16; fast where the hardware has it, e.g. AVX-512 BF16 or a GPU).

The model is the paper's (embedding 256, 8 heads, 3 blocks, FFN 1024) with random weights: the
cost of a step does not depend on them.  With random weights the logits are nearly uniform, so
STOP (probability ~1/V per draw) is almost never drawn and every sequence runs to its full
length; the few that do stop are counted and the time is divided by the tokens actually made.

Showers as they come.  The shower cases make each shower as long as one of our simulator's
showers at a uniform 10-100 GeV (mean ~1 210 hits, 100-1 700): the VQ-token GPT draws its
multiplicity first (``GPTConfig.multiplicity_token``, the pool of hit counts given, so the
output layer has 1 700 more rows, which are never sampled), and the direct-token model is
asked for each simulated shower's incident energy, number of hits and visible energy
(energy order by layer, "bounded+energy_budget+rescale_to_visible_energy": notebook 07's
second variant; random weights, no fitted quantities needed).  Their table gives seconds
per shower and showers per second; attention, whose cost grows with the square of the
length, is then weighted as in real showers.  ``--shower-tokens`` caps the lengths.

Lengths.  A jet is START + 128 sampled tokens + STOP and a shower START + 1700 + STOP: the models
and ``generate_batch`` use ``max_length`` = 130 and 1702, which count START and STOP
(``generate_batch`` writes STOP itself into the last position of a full sequence, as the token
files end a truncated jet).  A sequence thus samples 128 (1700) tokens; the time is divided by
the tokens sampled (a STOP drawn early counts, the STOP written at the end does not).  The
reference method (a) runs the same 128 (1700) steps.  Vocabularies: 8194 (jets, 8192 codes) and
65 538 (showers, 65 536 codes).

(a) Reference method (as the published implementation generates): at every step the whole
    sequence so far goes through the model again, ``model(tokens[:, :t])``, the output layer is
    applied to all t positions, the last position's logits are kept and the next token drawn
    with ``torch.multinomial(softmax(logits))``; batch 2 as in the paper.  Jets: the 128 steps
    are run whole (best of ``--repeats``); the same integration as for showers is printed next
    to it as a check.  Showers (minutes per shower here): single steps are timed at
    ``--reference-points`` lengths spread over 1..1700 (best of ``--reference-repeats`` each), and the
    time of every step 1..1700 is interpolated linearly between them and summed (trapezoid).
(b) ``omnijet_lib.generation.generate_batch``: key/value cache, finished rows leave the batch,
    inverse-transform sampling; batches ``--batches``.  Jets: best of ``--repeats`` whole runs
    after a whole warm-up run.  Showers: one timed run after a short warm-up (a run at batch
    512 takes a few minutes and ~3 GB: the key/value cache alone is 512 x 1702 x 256 x 2 x 3 x
    4 B = 2.7 GB).

"ms/token" is per sequence-token (batch time / tokens generated); the speed-up is (a)'s
ms/token over (b)'s.

Floor.  FLOPs per generated token, counted as 2 x multiply-adds of: the linear layers of the
blocks (qkv 256->768, attention output 256->256, FFN 256->1024->256, x 3 blocks), the output
layer 256->V, and attention q.k and a.v at the mean context length of the run ((N+1)/2 keys,
x 3 blocks); embedding lookup, biases, LayerNorm, ReLU, softmax and sampling are not counted.
Arithmetic floor = those FLOPs / the rate of a large square float32 matmul measured here.
Shape floor = the measured time of the model's own matmuls alone at that batch size, in a step's
order: its linear layers on (B, in) -> out with its weights, and q.k / a.v on a filled cache of
its layout at the mean context; per token.  It includes memory traffic and torch's per-call
overhead, which dominate at small batch (the output layer's weights, 8 MB for jets and 67 MB for
showers, are read once per step) and for attention (each token reads its sequence's whole cache).
The last table profiles a jet generation at batch ``--profile-batch`` with torch.profiler.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from omnijet_lib.data.shower_simulation import simulate_showers
from omnijet_lib.devices import PRECISIONS, pick_device
from omnijet_lib.generation import generate_batch
from omnijet_lib.generation.hits import generate_hits
from omnijet_lib.generation.timing import best_of, reference_integrated, reference_whole, synchronize
from omnijet_lib.models.gpt import GPT, GPTConfig, KVCache
from omnijet_lib.models.spatial_gpt import SpatialGPT, SpatialGPTConfig
from omnijet_lib.tokenizers.tokens import PAD


@dataclass(frozen=True)
class Case:
    name: str
    codebook_size: int  # vocabulary = codebook_size + 2
    n_tokens: int  # tokens sampled after START; max_length = n_tokens + 2 (START, STOP)
    short: bool  # (a) runs whole and (b) best of --repeats; else (a) integrated and (b) timed once


JETS = Case("jets", 8192, 128, short=True)
SHOWERS = Case("showers", 65536, 1700, short=False)
# Notebook 07's defaults for its layer-ordered variant
DIRECT_NOTEBOOK_SIZE = SpatialGPTConfig(
    embed_dim=64, n_heads=4, n_blocks=3, ffn_dim=256, condition_on_n_hits=True, order="layer",
    energy_strategy="bounded+energy_budget+rescale_to_visible_energy",
)  # fmt: skip


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds busy on the whole machine, CPU seconds of this process); the first is nan off Linux."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    try:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        busy = float("nan")
    return busy, usage.ru_utime + usage.ru_stime


def per_call(fn: Callable[[], object], device: torch.device, *, min_seconds: float = 0.05, repeats: int = 3) -> float:
    """Seconds per call of a short ``fn``: loops of enough calls to last ``min_seconds``, best of ``repeats``."""
    fn()
    synchronize(device)
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            break
        calls = max(2 * calls, int(calls * 1.2 * min_seconds / max(elapsed, 1e-6)))
    best = elapsed / calls
    for _ in range(repeats - 1):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def matmul_rate(size: int, device: torch.device, repeats: int) -> float:
    """FLOP/s of a (size x size) @ (size x size) float32 matmul, best of ``repeats`` after a second of warm-up."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    start = time.perf_counter()
    while time.perf_counter() - start < 1:  # the first heavy runs on a machine are slow
        (a @ b).sum().item()
    seconds = best_of(lambda: a @ b, repeats, device)
    return 2 * size**3 / seconds


def build_model(case: Case, device: torch.device, seed: int) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(codebook_size=case.codebook_size, max_length=case.n_tokens + 2)  # START + tokens + STOP
    return GPT(config).to(device).eval()


# ----------------------------------------------------------------------------- FLOPs and floors


def flops_per_token(config: GPTConfig, context: float) -> dict[str, float]:
    """FLOPs (2 x multiply-adds) of one generated token with ``context`` keys attended, by part."""
    d, f, n = config.embed_dim, config.ffn_dim, config.n_blocks
    return {
        "blocks": n * (2 * d * 3 * d + 2 * d * d + 2 * d * f + 2 * f * d),  # qkv, out, FFN up and down
        "head": 2 * d * config.vocab_size,
        "attention": n * 2 * (2 * d * context),  # q.k and a.v over all heads
    }


def reference_flops_per_token(config: GPTConfig, n_tokens: int) -> float:
    """Mean FLOPs per generated token of the reference method: step t runs all t positions (causal attention)."""
    per_position = flops_per_token(config, 0)
    linear = per_position["blocks"] + per_position["head"]
    t = np.arange(1, n_tokens + 1, dtype=np.float64)
    attention = config.n_blocks * 4 * config.embed_dim * t * (t + 1) / 2  # query i attends i keys
    return float(np.mean(linear * t + attention))


def shape_floor(model: GPT, batch: int, context: int, device: torch.device) -> dict[str, float]:
    """Seconds per step of the model's matmuls alone at ``batch`` rows: by part, and all in a step's order.

    Uses the model's own weights and a filled key/value cache of its layout, read as the model
    does at ``context`` positions, so the data a step touches (and whether it fits in the processor's caches)
    is that of generation.  "blocks" and "attention" are summed over the blocks.
    """
    config = model.config
    d, f, h = config.embed_dim, config.ffn_dim, config.n_heads
    x, wide = torch.randn(batch, d, device=device), torch.randn(batch, f, device=device)  # (B, D), (B, F)
    # A filled cache as the model's: per block (B, H, capacity, D/H), the context rounded up to its growth step.
    capacity = -(-context // KVCache.GROWTH) * KVCache.GROWTH
    keys = [torch.randn(batch, h, capacity, d // h, device=device) for _ in range(config.n_blocks)]
    values = [torch.randn(batch, h, capacity, d // h, device=device) for _ in range(config.n_blocks)]
    query = torch.randn(batch, h, 1, d // h, device=device)  # (B, H, 1, D/H)
    weights = torch.randn(batch, h, 1, capacity, device=device)  # (B, H, 1, capacity)
    blocks = model.backbone.blocks

    def linears(block):
        block.attention.qkv(x), block.attention.out(x), block.ffn[0](x), block.ffn[2](wide)

    def attention(k, v):
        query @ k.transpose(-2, -1), weights @ v

    def step():
        for block, k, v in zip(blocks, keys, values):
            linears(block), attention(k, v)
        model.head(x)

    return {
        "blocks": per_call(lambda: [linears(block) for block in blocks], device),
        "head": per_call(lambda: model.head(x), device),
        "attention": per_call(lambda: [attention(k, v) for k, v in zip(keys, values)], device),
        "step": per_call(step, device),
    }


# ----------------------------------------------------------------------------- the two methods


@dataclass
class Timing:
    label: str
    batch: int
    seconds: float  # one batch
    tokens: int  # sequence-tokens generated in that batch
    steps: int  # model steps per batch
    note: str = ""

    @property
    def ms_per_token(self) -> float:
        return 1e3 * self.seconds / self.tokens

    @property
    def ms_per_sequence(self) -> float:
        return 1e3 * self.seconds / self.batch


def time_ours(
    model: GPT, case: Case, batch: int, args, device: torch.device, precision: str = "fp32"
) -> tuple[Timing, int]:
    """Time ``generate_batch``; also returns how many sequences drew STOP before the end."""
    generator = torch.Generator(device=device).manual_seed(args.seed)
    result = {}

    def run():
        result["sequences"] = generate_batch(
            model, batch, max_length=case.n_tokens + 2, generator=generator, precision=precision
        )

    if not case.short:  # one timed run after a short warm-up at the same batch
        warm_up = lambda: generate_batch(model, batch, max_length=34, generator=generator, precision=precision)
        seconds = best_of(run, 1, device, warm_up=warm_up)
        note = "1 run after warm-up"
    else:
        seconds = best_of(run, args.repeats, device)
        note = f"best of {args.repeats}"
    generated = result["sequences"][:, 1:-1]  # sampled positions: the last one only ever gets the written STOP
    tokens = int((generated != PAD).sum())
    stopped = int((generated == model.config.stop_token).any(dim=1).sum())
    label = "(b) generate_batch" + ("" if precision == "fp32" else f" {precision}")
    return Timing(label, batch, seconds, tokens, case.n_tokens, note), stopped


# ----------------------------------------------------------------------------- report


def run_case(case: Case, batches: list[int], args, device: torch.device, rate: float) -> dict:
    model = build_model(case, device, args.seed)
    config = model.config
    n = case.n_tokens
    context = (n + 1) / 2  # the step making token t attends t keys (START .. token t-1)
    flops = flops_per_token(config, context)
    total_flops = sum(flops.values())
    print()
    print(
        f"== {case.name}: START + {n} sampled tokens + STOP (max_length {n + 2} for the model and generate_batch), "
        f"vocabulary {config.vocab_size} =="
    )
    timings: list[Timing] = []
    reference = None
    generator = torch.Generator(device=device).manual_seed(args.seed)
    if not args.skip_reference:
        b = args.reference_batch
        if case.short:
            seconds = best_of(lambda: reference_whole(model, b, n, generator), args.repeats, device)
            reference = Timing("(a) reference, whole", b, seconds, b * n, n, f"best of {args.repeats}")
            timings.append(reference)
        seconds, lengths, step_seconds = reference_integrated(
            model, b, n, args.reference_points, args.reference_repeats, generator
        )
        integrated = Timing("(a) reference, integrated", b, seconds, b * n, n, f"{len(lengths)} step lengths")
        timings.append(integrated)
        reference = reference or integrated
        print("(a) single reference steps, ms (sequence length: time): ", end="")
        print(", ".join(f"{t}: {1e3 * s:.1f}" for t, s in zip(lengths, step_seconds)))
    stops = {}
    for batch in batches:
        if batch > args.max_batch_sequences_tokens / n:
            print(f"(b) batch {batch} skipped: {batch} x {n} tokens > --max-batch-sequences-tokens")
            continue
        for precision in args.precisions:
            timing, stops[batch] = time_ours(model, case, batch, args, device, precision)
            timings.append(timing)

    header = f"{'method':<28}{'batch':>6}{'ms/step':>10}{'ms/token':>10}{'ms/sequence':>13}{'speed-up':>10}  note"
    print(header)
    for t in timings:
        speed_up = f"{reference.ms_per_token / t.ms_per_token:.1f}x" if reference else "-"
        line = f"{t.label:<28}{t.batch:>6}{1e3 * t.seconds / t.steps:>10.2f}{t.ms_per_token:>10.4f}"
        print(f"{line}{t.ms_per_sequence:>13.1f}{speed_up:>10}  {t.note}")
    if reference:
        print(f"speed-up = (a) ms/token / (b) ms/token, (a) = {reference.label}")
    early = {b: s for b, s in stops.items() if s}
    if early:
        print("sequences that drew STOP before the end: " + ", ".join(f"{s} of {b}" for b, s in early.items()))

    print(
        f"FLOPs per generated token: blocks {flops['blocks'] / 1e6:.2f} M + output layer {flops['head'] / 1e6:.2f} M"
        f" + attention at mean context {context:g}: {flops['attention'] / 1e6:.2f} M = {total_flops / 1e6:.2f} M"
        f"; arithmetic floor {1e3 * total_flops / rate:.4f} ms/token at {rate / 1e9:.0f} GFLOP/s"
    )
    if reference:
        ref_flops = reference_flops_per_token(config, n)
        print(
            f"reference method: {ref_flops / 1e6:.0f} MFLOPs per token (all positions recomputed) -> "
            f"{ref_flops / reference.ms_per_token / 1e6:.0f} GFLOP/s achieved at batch {reference.batch}"
        )
    ours = [t for t in timings if t.label.startswith("(b)")]
    floors = {}
    if ours:
        print(
            f"{'batch':>6}{'precision':>10}{'ours ms/tok':>13}{'arith. floor':>14}{'ours/floor':>12}"
            f"{'| shapes: head':>15}{'blocks':>9}{'attn':>9}{'step':>9}{'GFLOP/s':>9}{'ours/floor':>12}"
        )
        arithmetic = total_flops / rate  # float32 rate: the bf16 rows show what half precision buys against it
        shape_parts = {}
        for t in ours:
            precision = t.label.split()[-1] if t.label.split()[-1] in args.precisions else "fp32"
            parts = shape_parts.setdefault(t.batch, shape_floor(model, t.batch, round(context), device))
            shapes = parts["step"] / t.batch
            floors[t.batch, precision] = (t.ms_per_token, 1e3 * arithmetic, 1e3 * shapes)
            ms = {k: 1e3 * v / t.batch for k, v in parts.items()}
            print(
                f"{t.batch:>6}{precision:>10}{t.ms_per_token:>13.4f}{1e3 * arithmetic:>14.4f}"
                f"{t.ms_per_token / (1e3 * arithmetic):>12.2f}"
                f"{ms['head']:>15.4f}{ms['blocks']:>9.4f}{ms['attention']:>9.4f}{1e3 * shapes:>9.4f}"
                f"{total_flops / shapes / 1e9:>9.0f}{t.ms_per_token / (1e3 * shapes):>12.2f}"
            )
        print(
            "(floors in ms per token, float32; shapes: the model's matmuls alone at that batch -- head, blocks'"
            " linears, attention, and all of them in a step's order = the shape floor)"
        )
    return {"reference": reference, "ours": {t.batch: t for t in ours if t.label == "(b) generate_batch"}, "floors": floors}


# ----------------------------------------------------------------------------- showers per second


def simulated_requests(n: int, max_hits: int, seed: int) -> dict[str, np.ndarray]:
    """Incident energy [GeV], number of hits and visible energy [MeV] of ``n`` simulated 10-100 GeV showers."""
    showers = simulate_showers(n, energy=(10.0, 100.0), seed=seed, max_hits=max_hits, progress=False)
    keep = showers.n_hits > 0
    return {
        "incident_energy": showers.incident_energy[keep],
        "n_hits": showers.n_hits[keep],
        "visible_energy": showers.hits[keep, :, 3].sum(axis=1),
    }


@dataclass
class ShowerTiming:
    model: str
    precision: str
    batch: int
    seconds: float  # the whole batch
    hits: int  # hits (tokens) generated in the batch

    @property
    def seconds_per_shower(self) -> float:
        return self.seconds / self.batch


def shower_throughput(args, device: torch.device) -> list[ShowerTiming]:
    """Seconds per shower of both shower models at each batch and precision, on simulated shower sizes."""
    requests = simulated_requests(max(args.shower_batches), args.shower_tokens, args.seed)
    n_hits = requests["n_hits"]
    print()
    print(
        f"== showers per second: {len(n_hits)} simulated 10-100 GeV showers, {n_hits.mean():.0f} hits on average "
        f"({n_hits.min()}-{n_hits.max()}); each batch takes the first B of them =="
    )
    torch.manual_seed(args.seed)
    vq_config = GPTConfig(codebook_size=SHOWERS.codebook_size, max_length=args.shower_tokens + 2, multiplicity_token=True)
    models = {
        "VQ-token GPT, paper size": GPT(vq_config).to(device).eval(),
        "direct tokens, notebook 07": SpatialGPT(DIRECT_NOTEBOOK_SIZE).to(device).eval(),
    }
    timings = []
    for name, model in models.items():
        for batch in args.shower_batches:
            part = {k: v[:batch] for k, v in requests.items()}
            for precision in args.precisions:
                generator = torch.Generator(device=device).manual_seed(args.seed)
                if isinstance(model, GPT):
                    run = lambda: generate_batch(
                        model, batch, generator=generator, precision=precision, multiplicities=part["n_hits"]
                    )
                    warm_up = lambda: generate_batch(
                        model, batch, generator=generator, precision=precision, multiplicities=np.minimum(part["n_hits"], 32)
                    )
                else:
                    run = lambda: generate_hits(
                        model, part["incident_energy"], n_hits=part["n_hits"], visible_energy=part["visible_energy"],
                        generator=generator, precision=precision,
                    )
                    warm_up = lambda: generate_hits(
                        model, part["incident_energy"], n_hits=np.minimum(part["n_hits"], 32),
                        visible_energy=part["visible_energy"], generator=generator, precision=precision,
                    )
                seconds = best_of(run, 1, device, warm_up=warm_up)
                timings.append(ShowerTiming(name, precision, batch, seconds, int(part["n_hits"].sum())))
    print(f"{'model':<30}{'precision':>10}{'batch':>7}{'s/shower':>10}{'showers/s':>11}{'ms/hit':>9}")
    for t in timings:
        print(
            f"{t.model:<30}{t.precision:>10}{t.batch:>7}{t.seconds_per_shower:>10.4f}{1 / t.seconds_per_shower:>11.2f}"
            f"{1e3 * t.seconds / t.hits:>9.4f}"
        )
    print("(one timed run per row after a warm-up of 32 hits per shower; the multiplicity drawn by the VQ-token GPT")
    print(" is the simulated shower's, so both models make the same numbers of hits)")
    return timings


def profile_step(args, device: torch.device, batch: int) -> None:
    """Where a jet generation step at ``batch`` spends its time: torch.profiler over one whole run, per step."""
    from torch.profiler import ProfilerActivity, profile

    model = build_model(JETS, device, args.seed)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    run = lambda: generate_batch(model, batch, max_length=JETS.n_tokens + 2, generator=generator)
    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        run()
        wall = time.perf_counter() - start
    steps = JETS.n_tokens
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print()
    print(
        f"== profile: jets, batch {batch}, one generate_batch run of {steps} steps under torch.profiler "
        f"({1e3 * wall / steps:.2f} ms per step with the profiler on) =="
    )
    print(f"{'op (self CPU time)':<36}{'calls/step':>11}{'us/step':>10}{'share':>8}")
    for e in events[: args.profile_top]:
        share = e.self_cpu_time_total / total
        print(f"{e.key[:35]:<36}{e.count / steps:>11.1f}{e.self_cpu_time_total / steps:>10.0f}{share:>8.1%}")
    rest = events[args.profile_top :]
    print(f"{'(other ops)':<36}{'':>11}{sum(e.self_cpu_time_total for e in rest) / steps:>10.0f}")
    print(f"{'(sum of ops)':<36}{'':>11}{total / steps:>10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--cases", nargs="*", default=["jets", "showers", "throughput"], choices=["jets", "showers", "throughput"],
        help="jets, showers: per token against the reference and the floors; throughput: showers per second of both"
        " shower models",
    )
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "bf16"], choices=list(PRECISIONS), help="precisions of (b)"
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 512], help="batch sizes of (b)")
    parser.add_argument(
        "--shower-batches", type=int, nargs="+", default=None, help="(b) for showers (default --batches)"
    )
    parser.add_argument("--shower-tokens", type=int, default=SHOWERS.n_tokens, help="tokens per shower")
    parser.add_argument("--reference-batch", type=int, default=2, help="batch of (a), 2 as in the paper")
    parser.add_argument("--reference-points", type=int, default=10, help="step lengths timed for (a)'s integration")
    parser.add_argument("--reference-repeats", type=int, default=3, help="best of this many per (a) step length")
    parser.add_argument("--skip-reference", action="store_true", help="only (b) and the floors")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many whole runs (jets)")
    parser.add_argument("--matmul-size", type=int, default=2048, help="square matmul that sets the arithmetic rate")
    parser.add_argument("--max-batch-sequences-tokens", type=int, default=10**7, help="skip (b) runs larger than this")
    parser.add_argument("--profile-batch", type=int, default=64, help="jets batch profiled at the end (0: no profile)")
    parser.add_argument("--profile-top", type=int, default=12, help="ops listed in the profile")
    parser.add_argument("--quick", action="store_true", help="small settings: a smoke test in under a minute")
    args = parser.parse_args()
    if args.quick:  # batch 64 for jets stays: the first target is stated there
        args.batches, args.shower_batches = [1, 64], [2, 8]
        args.shower_tokens, args.reference_points, args.reference_repeats = 64, 5, 1
        args.repeats, args.matmul_size, args.profile_batch = 1, 1024, 8
    args.shower_batches = args.shower_batches or args.batches
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    showers = Case(SHOWERS.name, SHOWERS.codebook_size, args.shower_tokens, short=False)

    print(f"GPT generation speed: torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")
    print(f"load average at start (other work on the machine slows every timing): {os.getloadavg()[0]:.2f}")
    wall_start, (busy_start, own_start) = time.perf_counter(), cpu_seconds()
    print("model: embedding 256, 8 heads, 3 blocks, FFN 1024, random weights (STOP is almost never drawn)")
    with torch.inference_mode():
        rate = matmul_rate(args.matmul_size, device, repeats=5)
        print(f"large matmul {args.matmul_size}^3 float32: {rate / 1e9:.0f} GFLOP/s (best of 5 after 1 s of warm-up)")
        results = {}
        for name in [c for c in args.cases if c != "throughput"]:
            case, batches = (JETS, args.batches) if name == "jets" else (showers, args.shower_batches)
            results[name] = run_case(case, batches, args, device, rate)
        shower_timings = shower_throughput(args, device) if "throughput" in args.cases else []
        if args.profile_batch:
            profile_step(args, device, args.profile_batch)

    print()
    busy, own = (end - start for end, start in zip(cpu_seconds(), (busy_start, own_start)))
    wall = time.perf_counter() - wall_start
    others = (busy - own) / wall
    verdict = "quiet machine" if others < 0.1 else "the machine was shared: these timings are NOT to be trusted"
    print(
        f"other processes used {busy - own:.0f} CPU-s during this run ({wall:.0f} s wall, this run {own:.0f} CPU-s):"
        f" {others:.2f} cores on average -> {verdict}"
    )
    print("== targets ==")
    jets = results.get("jets")
    if jets and jets["reference"] and 64 in jets["ours"]:
        speed_up = jets["reference"].ms_per_token / jets["ours"][64].ms_per_token
        met = "met" if speed_up >= 20 else "NOT met"
        print(f"at least 20x faster than (a) for jets at batch 64: {speed_up:.1f}x -> {met}")
    else:
        print("at least 20x faster than (a) for jets at batch 64: not measured in this run")
    for name, result in results.items():
        for (batch, precision), (ours, arithmetic, shapes) in result["floors"].items():
            ratio = ours / arithmetic
            met = "met" if ratio <= 2 else "NOT met"
            print(
                f"within 2x of the float32 arithmetic floor, {name} batch {batch}, {precision}: {ours:.4f} / "
                f"{arithmetic:.4f} ms per token = {ratio:.2f}x -> {met}  (shape floor {shapes:.4f} ms: {ours / shapes:.2f}x)"
            )
    targets = {"VQ-token GPT, paper size": 0.5, "direct tokens, notebook 07": 0.05}
    if shower_timings and args.shower_tokens < SHOWERS.n_tokens:
        print(f"(showers capped at {args.shower_tokens} hits: the shower targets below are not at their sizes)")
    for t in shower_timings:
        met = "met" if t.seconds_per_shower <= targets[t.model] else "NOT met"
        print(
            f"{t.model} <= {targets[t.model]} s per shower, batch {t.batch}, {t.precision}: "
            f"{t.seconds_per_shower:.4f} s -> {met}"
        )


if __name__ == "__main__":
    main()
