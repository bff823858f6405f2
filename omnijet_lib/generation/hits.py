"""Generation with the direct-token shower model: hit by hit, with a key/value cache, at the energies asked for.

:func:`generate_hits` draws :class:`~omnijet_lib.data.hit_sequences.HitSequences` from a
:class:`~omnijet_lib.models.spatial_gpt.SpatialGPT`; :func:`generate_showers` does it in
batches for any number of incident energies, draws first what the model needs and was
not given (:func:`draw_shower_sizes`), and puts the showers onto the grid.  Finished
showers leave the batch as in :mod:`omnijet_lib.generation.tokens`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from omnijet_lib.data.hit_sequences import HitSequences, showers_from_hits
from omnijet_lib.data.shower_preprocessing import voxelise
from omnijet_lib.data.showers import Showers, concatenate_showers
from omnijet_lib.devices import autocast, for_decoding, precision_dtype
from omnijet_lib.errors import BadDataError
from omnijet_lib.generation.tokens import COMPACT_FRACTION
from omnijet_lib.models.gpt import KVCache, run_blocks
from omnijet_lib.models.shower_sizes import SHOWER_SIZES, as_hit_count
from omnijet_lib.models.spatial_gpt import MIN_ENERGY_LEFT_MEV, SpatialGPT, condition_features


@torch.inference_mode()
def generate_hits(
    model: SpatialGPT,
    incident_energy,
    *,
    n_hits=None,
    visible_energy=None,
    max_hits: int | None = None,
    temperature: float = 1.0,
    energy_temperature: float = 1.0,
    generator: torch.Generator | None = None,
    rescale: bool = True,
    precision: str = "fp32",
    compile: bool = False,
) -> HitSequences:
    """One shower per requested incident energy [GeV] (and number of hits, if the model takes it).

    Hit by hit with a key/value cache until STOP or ``max_hits``; showers that have
    stopped leave the batch, as in :func:`omnijet_lib.generation.tokens.generate_batch`.
    A model conditioned on the number of hits gives each shower exactly the hits asked for;
    one whose energy strategy uses ``energy_budget`` or ``rescale_to_visible_energy`` needs
    each shower's ``visible_energy`` [MeV] too.  ``rescale=False`` leaves the chain's own
    energy scale to a model that rescales (to see what the rescale does).
    ``precision`` "bf16" (or "fp16") runs the blocks, the voxel heads and the key/value
    cache in half the bits (as :func:`omnijet_lib.generation.tokens.generate_batch`);
    the energy head stays in fp32.  ``compile=True`` runs each step's blocks through
    ``torch.compile`` (:func:`~omnijet_lib.devices.for_decoding`).
    """
    config = model.config
    max_hits = config.max_hits if max_hits is None else max_hits
    if not 1 <= max_hits <= config.max_hits:
        msg = f"max_hits must be in 1..{config.max_hits} (the model's), got {max_hits}"
        raise ValueError(msg)
    model.eval()
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    dtype = dtype if precision == "fp32" else precision_dtype(precision)
    incident = np.asarray(incident_energy, dtype=np.float32).reshape(-1)
    batch = len(incident)
    condition = torch.as_tensor(condition_features(incident, n_hits, config=config), device=device)  # (B, C)
    if config.condition_on_n_hits:
        asked = model.asked_hits(condition).long()  # (B,) per output row
        if asked.max() > max_hits:
            msg = f"asked for showers of up to {int(asked.max())} hits, more than max_hits = {max_hits}"
            raise ValueError(msg)
    cache = KVCache(config.blocks, batch, device=device, dtype=dtype, max_length=max_hits + 1)
    voxels = torch.zeros((batch, max_hits, 3), dtype=torch.long, device=device)
    log_energy = torch.zeros((batch, max_hits), dtype=torch.float32, device=device)
    length = torch.zeros(batch, dtype=torch.long, device=device)
    previous_layer = torch.full((batch,), -1, dtype=torch.long, device=device)  # per cache row
    previous_energy = torch.full((batch,), math.inf, device=device)  # in the model's units; none yet
    placed = torch.zeros(batch, device=device)  # visible energy of the hits so far [MeV], per cache row
    if config.energy.draws_visible_energy:
        if visible_energy is None:
            msg = "this model shares a visible energy among its hits: give visible_energy [MeV]"
            raise ValueError(msg)
        visible = torch.tensor(np.broadcast_to(visible_energy, (batch,)), dtype=torch.float32, device=device)
        if not (torch.isfinite(visible).all() and (visible > 0).all()):
            msg = "every visible energy asked for must be > 0 [MeV]"
            raise BadDataError(msg)
        asked_visible = visible  # per output row; `visible` follows the cache rows
    rows = torch.arange(batch, device=device)  # output row of each cache row
    live = torch.ones(batch, dtype=torch.bool, device=device)
    blocks = for_decoding(run_blocks, compile)
    with autocast(precision, device):
        hidden = run_blocks(model.blocks, model.start_input(condition), cache, max_length=max_hits + 1)[:, -1]
        for position in range(max_hits):
            live_rows = live.nonzero().squeeze(1)
            hits_left = asked[rows[live_rows]] - length[rows[live_rows]] if config.condition_on_n_hits else None
            vox, energy, stop = model.sample_hit(
                hidden[live_rows], condition[live_rows], temperature=temperature, energy_temperature=energy_temperature,
                generator=generator, allow_stop=not config.condition_on_n_hits,
                previous=(previous_layer[live_rows], previous_energy[live_rows]),
                budget=None if not config.energy.energy_budget else model.budget_features(
                    placed[live_rows], visible[live_rows], hits_left, condition[live_rows],
                ),
                hits_left=hits_left,
            )  # fmt: skip
            previous_layer[live_rows] = vox[:, 2]
            previous_energy[live_rows] = energy - model.energy_offset(condition[live_rows])
            placed[live_rows] += torch.where(stop, 0.0, torch.exp(energy - config.log_energy_shift))
            kept = live_rows[~stop]
            voxels[rows[kept], position], log_energy[rows[kept], position] = vox[~stop], energy[~stop]
            length[rows[kept]] += 1
            if config.condition_on_n_hits:
                stop = length[rows[live_rows]] >= asked[rows[live_rows]]  # the asked hits are all placed
            live[live_rows[stop]] = False
            if not live.any() or position == max_hits - 1:
                break
            # Rows that stopped but still sit in the cache get a dummy hit; their output is never read.
            step_vox = torch.zeros((cache.batch_size, 3), dtype=torch.long, device=device)
            step_energy = torch.zeros(cache.batch_size, device=device)
            step_vox[live_rows], step_energy[live_rows] = vox, energy
            if (~live).sum() >= COMPACT_FRACTION * cache.batch_size:
                keep = live.nonzero().squeeze(1)
                cache.keep(keep)
                rows, live, step_vox, step_energy, condition = (
                    rows[keep],
                    live[keep],
                    step_vox[keep],
                    step_energy[keep],
                    condition[keep],
                )
                previous_layer, previous_energy, placed = previous_layer[keep], previous_energy[keep], placed[keep]
                if config.energy.draws_visible_energy:
                    visible = visible[keep]
            step = model.hit_inputs(step_vox[:, None], step_energy[:, None], condition, first=position + 1)
            hidden = blocks(model.blocks, step, cache, max_length=max_hits + 1)[:, -1]
    mask = torch.arange(max_hits, device=device) < length[:, None]
    # One factor per shower: its hits then sum to the visible energy asked.
    if config.energy.rescale_to_visible_energy and rescale:
        hit_sum = torch.where(mask, torch.exp(log_energy - config.log_energy_shift), 0.0).sum(dim=1)
        scale = torch.log(asked_visible) - torch.log(hit_sum.clamp(min=MIN_ENERGY_LEFT_MEV))
        log_energy = torch.where(mask, log_energy + scale[:, None], 0.0)
    width = max(1, int(length.max()))
    return HitSequences(
        voxels[:, :width].cpu().numpy(), log_energy[:, :width].cpu().numpy(), mask[:, :width].cpu().numpy(), incident,
        config.geometry,
    )  # fmt: skip


def draw_shower_sizes(
    model: SpatialGPT, incident_energy, *, n_hits=None, visible_energy=None, rng: np.random.Generator
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Each shower's number of hits and visible energy [MeV], where the model needs one and none is given.

    At a fixed incident energy the two rise and fall together, so a model that uses both
    draws them from its two log-normals (:mod:`omnijet_lib.models.shower_sizes`) with the
    correlation of its training showers; one given sets where the other is drawn.  None
    for a quantity the model does not use and was not given.
    """
    incident = np.asarray(incident_energy, dtype=np.float64).reshape(-1)
    correlation = float(getattr(model, "shower_size_correlation", 0.0))
    fits = {q: model.fitted(q) for q in SHOWER_SIZES}
    values = {"hit_count": n_hits, "visible_energy": visible_energy}
    position = {}  # widths above the mean, of each quantity given or drawn
    for quantity in SHOWER_SIZES:
        if values[quantity] is not None:
            values[quantity] = np.broadcast_to(np.asarray(values[quantity]), incident.shape)
            if fits[quantity] is not None:
                position[quantity] = fits[quantity].standardised(incident, values[quantity])
    for quantity, other in zip(SHOWER_SIZES, SHOWER_SIZES[::-1]):
        if fits[quantity] is None or values[quantity] is not None:
            continue
        noise = rng.normal(size=incident.shape)
        if other in position:
            noise = correlation * position[other] + math.sqrt(1 - correlation**2) * noise
        position[quantity], values[quantity] = noise, fits[quantity].at(incident, noise)
        if quantity == "hit_count":
            values[quantity] = as_hit_count(values[quantity], model.config.max_hits)
    return values["hit_count"], values["visible_energy"]


def generate_showers(
    model: SpatialGPT,
    incident_energy,
    *,
    n_hits=None,
    visible_energy=None,
    batch_size: int = 64,
    temperature: float = 1.0,
    energy_temperature: float = 1.0,
    seed: int = 0,
    progress: bool = True,
    rescale: bool = True,
    precision: str = "fp32",
    compile: bool = False,
) -> tuple[Showers, np.ndarray]:
    """One shower per incident energy [GeV], in batches, put onto the grid; and which requests they answer.

    A shower that drew STOP before any hit is no shower: it is left out, and the
    returned indices (into ``incident_energy``) of the kept ones show how many were.
    A model conditioned on the number of hits draws it from its fitted
    :class:`~omnijet_lib.models.shower_sizes.HitCountModel` unless ``n_hits`` is given,
    and one whose energy strategy uses ``energy_budget`` or ``rescale_to_visible_energy``
    the visible energy [MeV] from its fit likewise unless ``visible_energy`` is given
    (``rescale``, ``precision``, ``compile``: see :func:`generate_hits`).

    The model may place two hits in one voxel; :func:`voxelise` then moves one as
    for the VQ-VAE model's showers (energy and hit count kept).  The same seed,
    model, device and ``batch_size`` give the same showers.
    """
    incident = np.asarray(incident_energy, dtype=np.float32).reshape(-1)
    # one per shower (given ones broadcast), or None where the model needs none and none is given
    requested, visible = draw_shower_sizes(
        model, incident, n_hits=n_hits, visible_energy=visible_energy, rng=np.random.default_rng(seed)
    )
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    batches = []
    with tqdm(total=len(incident), desc="generating showers", unit="shower", disable=not progress) as bar:
        for start in range(0, len(incident), batch_size):
            part = slice(start, start + batch_size)
            hits = generate_hits(
                model, incident[part], n_hits=None if requested is None else requested[part],
                visible_energy=None if visible is None else visible[part],
                temperature=temperature, energy_temperature=energy_temperature, generator=generator,
                rescale=rescale, precision=precision, compile=compile,
            )  # fmt: skip
            batches.append(showers_from_hits(hits, log_energy_shift=model.config.log_energy_shift))
            bar.update(len(hits))
    showers = concatenate_showers(batches)
    kept = np.flatnonzero(showers.n_hits > 0)
    return voxelise(showers[kept]), kept
