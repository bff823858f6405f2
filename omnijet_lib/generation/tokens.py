"""Autoregressive generation with a :class:`~omnijet_lib.models.gpt.GPT`, and decoding generated jets and showers.

Every sequence starts at START and draws one token per step from the model's
softmax until it draws STOP or reaches ``max_length``.  What makes it fast
(docs/showers.md, "Speed"; ``benchmarks/generation.py`` measures it):

* a key/value cache: each step runs the model on one new token per sequence,
  not on the whole sequence again;
* finished sequences leave the batch: once an eighth of the rows in the cache
  have stopped, the cache is compacted, and the output layer and sampling only
  ever run for unfinished rows;
* sampling by inverse transform -- one uniform number per sequence, a
  cumulative sum and a binary search -- instead of ``torch.multinomial``,
  which dominates a step at a vocabulary of 65 538; and straight from the
  output layer, a block of the vocabulary at a time
  (:func:`~omnijet_lib.models.sampling.sample_from_head`), so the (B, V)
  logits are never normalised as a whole;
* ``precision="bf16"`` (or ``"fp16"``): the matrix products, the output layer
  and the key/value cache in half the bits, where the hardware has them (GPUs;
  CPUs with AVX-512 BF16 or AMX).  The logits come out of a bf16 product
  (8 significant bits; a 256-wide layer of random weights moved them by 0.3 %
  of their rms), so each probability moves by a few per cent: a choice for
  throughput, off by default.

START is never sampled (its probability is set to 0).  A seed fixes the draws:
the same seed, model and batch size give the same sequences on a device.
"""

from __future__ import annotations

import awkward as ak
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from omnijet_lib.data.jets import UNLABELLED, Jets
from omnijet_lib.data.preprocessing import constituents_from_features
from omnijet_lib.data.shower_preprocessing import showers_from_features, voxelise
from omnijet_lib.data.showers import UNKNOWN_ENERGY, Showers
from omnijet_lib.devices import autocast, for_decoding, precision_dtype
from omnijet_lib.models.gpt import GPT, KVCache
from omnijet_lib.models.sampling import sample_categorical, sample_from_head, sample_tokens
from omnijet_lib.observables import jet_kinematics
from omnijet_lib.tokenizers.base import Tokenizer
from omnijet_lib.tokenizers.tokens import PAD, START

# Compact the cache once this fraction of its rows has stopped: compacting copies
# the cache, so doing it at every stop would cost more than the dead rows do.
COMPACT_FRACTION = 1 / 8


@torch.inference_mode()
def generate_batch(
    model: GPT,
    batch_size: int,
    *,
    max_length: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    multiplicities: Tensor | None = None,
    jet_pt: Tensor | None = None,
    precision: str = "fp32",
    compile: bool = False,
) -> Tensor:
    """``batch_size`` sequences ``(B, max_length)``: START, tokens, STOP, then PAD.

    ``max_length`` counts START and STOP, as the token files do.  A sequence
    that has not drawn STOP when only the last position is left gets STOP there,
    just as a real jet truncated to ``max_length - 2`` constituents ends in the
    token files.  Runs on the model's device.

    A model with ``config.multiplicity_token`` first draws the multiplicity n,
    then n constituents with STOP ruled out, then STOP.  n comes from
    ``multiplicities`` if given -- one of them drawn uniformly, e.g. the training
    jets' multiplicities, i.e. their histogram exactly -- else from the model's
    P(M(n) | START) at temperature 1 (it is a distribution learned, not a choice
    of style).  The learned one is a histogram fitted by stochastic steps, which
    stays noisy where the training jets are few; the training sample's own is
    what the point-cloud generators of the field draw from.

    A model conditioned on the jet pT (``config.jet_pt_edges``) then draws the pT
    bin: from ``jet_pt`` [GeV] if given, else from the model's P(P(b) | START, M(n)).
    Pools given are drawn from jointly -- row i of ``multiplicities`` goes with row i
    of ``jet_pt``, one training jet's n and pT -- so a model with both tokens takes
    both pools or neither.  The returned sequences hold no condition tokens: they
    have a token file's layout.

    ``precision``: "fp32", or "bf16"/"fp16" for the matrix products, the output layer
    and the key/value cache (see the module's docstring).  ``compile=True`` runs each step's
    backbone through ``torch.compile`` (:func:`~omnijet_lib.devices.for_decoding`).
    """
    config = model.config
    max_length = config.max_length if max_length is None else max_length
    if not 2 <= max_length <= config.max_length:
        msg = f"max_length must be in 2..{config.max_length} (the model's), got {max_length}"
        raise ValueError(msg)
    model.eval()
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype if precision == "fp32" else precision_dtype(precision)
    multiplicities, jet_pt = _checked_pools(config, multiplicities, jet_pt, max_length, device)
    with autocast(precision, device):
        backbone = for_decoding(model.backbone, compile)
        return _generate(
            model, backbone, batch_size, max_length, temperature, top_k, generator, multiplicities, jet_pt, dtype
        )


def _generate(
    model, backbone, batch_size, max_length, temperature, top_k, generator, multiplicities, jet_pt, dtype
) -> Tensor:
    """:func:`generate_batch` once its arguments are checked, with the model's matrix products in ``dtype``
    and its backbone (perhaps compiled) as ``backbone``."""
    config = model.config
    device = next(model.parameters()).device
    head = model.head.linear
    weight = head.weight.to(dtype)  # cast once, not at every step
    sequences = torch.full((batch_size, max_length), PAD, dtype=torch.long, device=device)
    sequences[:, 0] = START
    cache_length = max_length + config.n_condition_tokens
    cache = KVCache(config, batch_size, device=device, dtype=dtype, max_length=cache_length)
    rows = torch.arange(batch_size, device=device)  # output row of each cache row
    live = torch.ones(batch_size, dtype=torch.bool, device=device)  # cache rows still generating
    hidden = backbone(sequences[:, :1], cache)[:, -1]  # (B, D)
    pool = multiplicities if multiplicities is not None else jet_pt
    pick = None if pool is None else torch.randint(len(pool), (batch_size,), generator=generator, device=device)
    multiplicity = None  # constituents each cache row will have, if the model draws it first
    if config.multiplicity_token:
        first = config.first_multiplicity_token
        if multiplicities is None:
            logits = model.head(hidden)[:, first : first + max_length - 1]  # M(0) .. M(max_length - 2)
            multiplicity = sample_categorical(logits, generator=generator)
        else:
            multiplicity = multiplicities[pick]
        hidden = backbone((first + multiplicity)[:, None], cache, **_to_come(config, multiplicity, 0))[:, -1]
    if config.jet_pt_edges:
        first = config.first_jet_pt_token
        if jet_pt is None:
            pt_bin = sample_categorical(
                model.head(hidden)[:, first : first + config.n_jet_pt_bins], generator=generator
            )
        else:
            pt_bin = config.jet_pt_bin(jet_pt[pick])
        hidden = backbone((first + pt_bin)[:, None], cache, **_to_come(config, multiplicity, 0))[:, -1]
    for position in range(1, max_length):
        live_rows = live.nonzero().squeeze(1)
        if position == max_length - 1:  # full: nothing but STOP fits
            sequences[rows[live_rows], position] = config.stop_token
            break
        # The output layer only for unfinished rows, and only over START, the codes and STOP: condition tokens
        # (M(n), P(b)) are never constituents, nor is STOP drawn by a jet that is not full yet.
        n_classes = config.stop_token + (0 if multiplicity is not None else 1)
        if top_k is None:
            tokens = sample_from_head(
                hidden[live_rows], weight, head.bias, n_classes=n_classes, banned=(START,),
                temperature=temperature, generator=generator,
            )  # fmt: skip
        else:  # the k best of the whole vocabulary first
            logits = F.linear(hidden[live_rows].to(dtype), weight, head.bias)[:, :n_classes]
            tokens = sample_tokens(logits, temperature=temperature, top_k=top_k, generator=generator)
        if multiplicity is not None:  # rows with all their constituents end here
            tokens = torch.where(multiplicity[live_rows] == position - 1, config.stop_token, tokens)
        sequences[rows[live_rows], position] = tokens
        live[live_rows[tokens == config.stop_token]] = False
        if not live.any():
            break
        # Rows that have stopped but still sit in the cache get a dummy token; their output is never read.
        step = torch.full((cache.batch_size,), config.stop_token, dtype=torch.long, device=device)
        step[live_rows] = tokens
        if (~live).sum() >= COMPACT_FRACTION * cache.batch_size:
            keep = live.nonzero().squeeze(1)
            cache.keep(keep)
            rows, live, step = rows[keep], live[keep], step[keep]
            multiplicity = None if multiplicity is None else multiplicity[keep]
        hidden = backbone(step[:, None], cache, **_to_come(config, multiplicity, position))[:, -1]
    return sequences


def _to_come(config, multiplicity: Tensor | None, placed: int) -> dict:
    """The backbone's ``to_come`` for a step of a count-down model once ``placed`` constituents are in
    (see :func:`~omnijet_lib.models.gpt.constituents_to_come`); nothing for any other model."""
    if not config.count_down:
        return {}
    return {"to_come": (multiplicity - placed + 1).clamp(0, config.max_length - 1)[:, None]}


def _checked_pools(config, multiplicities, jet_pt, max_length: int, device) -> tuple[Tensor | None, Tensor | None]:
    """The pools generation draws a jet's conditions from, checked against the model and moved to ``device``."""
    if multiplicities is not None:
        if not config.multiplicity_token:
            msg = "multiplicities are for a GPT that draws the multiplicity first (GPTConfig.multiplicity_token)"
            raise ValueError(msg)
        multiplicities = torch.as_tensor(multiplicities, dtype=torch.long, device=device)
        if multiplicities.ndim != 1 or len(multiplicities) == 0:
            msg = f"multiplicities must be a non-empty 1-d array, got shape {tuple(multiplicities.shape)}"
            raise ValueError(msg)
        if multiplicities.min() < 0 or multiplicities.max() > max_length - 2:
            msg = (
                f"multiplicities {int(multiplicities.min())}..{int(multiplicities.max())} do not fit "
                f"sequences of max_length={max_length} (0..{max_length - 2} constituents)"
            )
            raise ValueError(msg)
    if jet_pt is not None:
        if not config.jet_pt_edges:
            msg = "jet_pt is for a GPT conditioned on the jet pT (GPTConfig.jet_pt_edges)"
            raise ValueError(msg)
        jet_pt = torch.as_tensor(jet_pt, dtype=torch.float32, device=device)
        if jet_pt.ndim != 1 or len(jet_pt) == 0 or not torch.isfinite(jet_pt).all():
            msg = f"jet_pt must be a non-empty 1-d array of finite values [GeV], got shape {tuple(jet_pt.shape)}"
            raise ValueError(msg)
        if config.multiplicity_token and multiplicities is None:
            msg = "draw a jet's multiplicity and pT together: give multiplicities with jet_pt (or neither)"
            raise ValueError(msg)
        if multiplicities is not None and len(multiplicities) != len(jet_pt):
            msg = f"multiplicities ({len(multiplicities)}) and jet_pt ({len(jet_pt)}) must describe the same jets"
            raise ValueError(msg)
    return multiplicities, jet_pt


def generate_sequences(
    model: GPT,
    n: int,
    *,
    batch_size: int = 256,
    max_length: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    progress: bool = True,
    multiplicities: np.ndarray | None = None,
    jet_pt: np.ndarray | None = None,
    precision: str = "fp32",
    compile: bool = False,
) -> np.ndarray:
    """``n`` sequences ``(n, max_length)`` (int64, PAD after the end), in batches, on the model's device.

    The same seed, model, device and ``batch_size`` give the same sequences.
    ``multiplicities`` and ``jet_pt``: for a model that draws the multiplicity
    (the jet pT) first, the pool it is drawn from; ``precision``, ``compile``: see :func:`generate_batch`.
    """
    if n < 1 or batch_size < 1:
        msg = f"need n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}"
        raise ValueError(msg)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    # checked and moved to the device once
    multiplicities, jet_pt = _checked_pools(
        model.config, multiplicities, jet_pt, max_length or model.config.max_length, device
    )
    batches = []
    with tqdm(total=n, desc="generating", unit="seq", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            size = min(batch_size, n - start)
            batch = generate_batch(
                model, size, max_length=max_length, temperature=temperature, top_k=top_k, generator=generator,
                multiplicities=multiplicities, jet_pt=jet_pt, precision=precision, compile=compile,
            )  # fmt: skip
            batches.append(batch.cpu())
            bar.update(size)
    return torch.cat(batches).numpy()


@torch.no_grad()
def stop_probability_by_length(
    model: GPT, sequences: np.ndarray, *, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """The model's mean probability of STOP after t tokens, t = 0, 1, ...: the exposure-bias diagnostic.

    ``sequences`` ``(N, T)`` are START t1 .. tn [STOP] PAD..., real (teacher forcing) or the
    model's own.  At every prefix of t <= n tokens the model's P(STOP | prefix) is taken,
    and averaged over the sequences that have that prefix.  On real prefixes the curve is
    the model's learned hazard of ending a jet; on its own prefixes it shows whether the
    model drifts into ending early (a higher curve).  Returns (mean P(STOP), number of
    sequences) per t.  Batches are small: each holds (batch, length, vocabulary) probabilities.
    """
    if model.config.multiplicity_token:
        msg = "a GPT that draws the multiplicity first ends a jet where that says, not by a STOP hazard to measure"
        raise ValueError(msg)
    sequences = torch.as_tensor(np.asarray(sequences), dtype=torch.long)
    stop = model.config.stop_token
    n_tokens = ((sequences != PAD) & (sequences != START) & (sequences != stop)).sum(dim=1)
    sums, counts = np.zeros(int(n_tokens.max()) + 1), np.zeros(int(n_tokens.max()) + 1)
    device = next(model.parameters()).device
    model.eval()
    for start in range(0, len(sequences), batch_size):
        n = n_tokens[start : start + batch_size]
        width = int(n.max()) + 1  # the prefix of t tokens ends at position t
        logits = model(sequences[start : start + batch_size, :width].to(device))
        p_stop = torch.softmax(logits.float(), dim=-1)[..., stop].cpu()
        has_prefix = torch.arange(width)[None, :] <= n[:, None]
        sums[:width] += (p_stop * has_prefix).sum(dim=0).numpy()
        counts[:width] += has_prefix.sum(dim=0).numpy()
    return sums / np.maximum(counts, 1), counts


def decode_generated_jets(sequences: np.ndarray, tokenizer: Tokenizer, *, label=UNLABELLED) -> tuple[Jets, np.ndarray]:
    """Generated sequences -> physical jets (axis at eta = phi = 0), and which sequences they came from.

    A sequence that stopped at once holds no constituent and makes no jet: it is
    left out, and the returned indices of the kept sequences show how many were.
    Constituents are sorted by pT as in real jets; charge and PDG id are unknown
    to the tokens and set to 0.  ``label`` (a JetClass index per sequence or one
    for all) defaults to ``UNLABELLED``, right for a model trained on several classes.
    """
    features, mask, kept = tokenizer.decode_sequences(sequences)
    zeros = np.zeros(len(kept))
    constituents = constituents_from_features(features, mask, zeros, zeros, tokenizer.preprocessing)
    kinematics = jet_kinematics(constituents)
    counts = kinematics["multiplicity"]
    flat = {f: ak.to_numpy(ak.flatten(constituents[f], axis=1)) for f in ("pt", "eta", "phi")}
    flat |= {"charge": np.zeros(counts.sum()), "pdg_id": np.zeros(counts.sum(), dtype=np.int32)}
    jets = Jets.from_flat(
        n_constituents=counts,
        constituents=flat,
        **{f: kinematics[f] for f in ("pt", "eta", "phi", "mass")},
        label=np.broadcast_to(np.asarray(label), (len(sequences),))[kept],
    )
    return jets.pt_ordered(), kept


def decode_generated_showers(sequences: np.ndarray, tokenizer: Tokenizer) -> tuple[Showers, np.ndarray]:
    """Generated sequences -> calorimeter showers on the grid, and which sequences they came from.

    The tokens decode to continuous (x, y, z, E) hits, which :func:`voxelise` puts
    onto the 30 × 30 × 30 cells, one hit per cell (energy and hit count kept): the
    paper's post-processing.  A sequence that stopped at once makes no shower and
    is left out.  The model is unconditional, so the incident energy is unknown
    (``UNKNOWN_ENERGY``).
    """
    features, mask, kept = tokenizer.decode_sequences(sequences)
    incident = np.full(len(kept), UNKNOWN_ENERGY, dtype=np.float32)
    return voxelise(showers_from_features(features, mask, incident, tokenizer.preprocessing)), kept
