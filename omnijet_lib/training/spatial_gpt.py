"""Training the direct-token shower model of :mod:`omnijet_lib.models.spatial_gpt`: its loss, and :func:`fit_spatial_gpt`."""

from __future__ import annotations

import math
import os
from dataclasses import asdict

import numpy as np
import torch
from torch import Tensor

from omnijet_lib.data.hit_sequences import HitSequences, check_order
from omnijet_lib.models.energy_mixture import mixture_nll
from omnijet_lib.models.gpt import chunked_cross_entropy
from omnijet_lib.models.shower_sizes import FITTED_QUANTITIES, SHOWER_SIZES, per_shower_quantities
from omnijet_lib.models.spatial_gpt import (
    SpatialGPT,
    SpatialGPTConfig,
    condition_features,
    flat_voxel,
    load_spatial_gpt,
    upper_bounds,
)
from omnijet_lib.training.config import StepOutput, TrainingConfig, TrainingResult
from omnijet_lib.training.loop import train


def spatial_loss(model: SpatialGPT, batch: tuple[Tensor, ...]) -> StepOutput:
    """Cross-entropy of the next voxel (or STOP) plus the energy head's NLL, each a mean over its targets.

    ``batch`` = (voxels (B, L, 3), log_energy (B, L), mask (B, L), condition (B, C)); the
    batch is cut to its longest shower first.
    """
    voxels, log_energy, mask, condition = batch
    longest = max(1, int(mask.sum(dim=1).max()))
    voxels, log_energy, mask = voxels[:, :longest], log_energy[:, :longest], mask[:, :longest]
    hidden = model.hidden_states(voxels, log_energy, condition)  # (B, L + 1, D): hit j is predicted at j
    # Targets: every hit, and STOP right after each shower's last hit.
    stop_at = torch.zeros(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    stop_at[torch.arange(len(mask), device=hidden.device), mask.sum(dim=1)] = True
    hit_hidden, stop_hidden = hidden[:, :-1][mask], hidden[stop_at]
    target = voxels[mask]  # (n, 3)
    stop = torch.full((len(stop_hidden),), model.stop_class, dtype=torch.long, device=hidden.device)
    if model.config.tokenization == "joint":
        classes = torch.cat([flat_voxel(target, model.config.geometry.shape), stop])
        ce, correct = chunked_cross_entropy(model.voxel_head, torch.cat([hit_hidden, stop_hidden]), classes)
        n_class = len(classes)
    else:
        ce, correct = chunked_cross_entropy(
            model.z_head, torch.cat([hit_hidden, stop_hidden]), torch.cat([target[:, 2], stop])
        )
        h = hit_hidden + model.axis_out[0](target[:, 2])
        ce_x, _ = chunked_cross_entropy(model.x_head, h, target[:, 0])
        h = h + model.axis_out[1](target[:, 0])
        ce_y, _ = chunked_cross_entropy(model.y_head, h, target[:, 1])
        ce, n_class = ce + ce_x + ce_y, len(target) + len(stop)  # summed over the axes, per hit
    energy = log_energy - model.energy_offset(condition)[:, None]  # in the model's units
    previous_energy = torch.cat([torch.full_like(energy[:, :1], math.inf), energy[:, :-1]], dim=1)
    previous_layer = torch.cat([torch.full_like(voxels[:, :1, 2], -1), voxels[:, :-1, 2]], dim=1)
    upper = upper_bounds(model.config, voxels[..., 2], previous_layer, previous_energy)[mask]
    hits_left = mask.sum(dim=1, keepdim=True) - torch.arange(mask.shape[1], device=mask.device)  # this one included
    budget = None
    if model.config.energy.energy_budget:
        hit_energy = torch.where(mask, torch.exp(log_energy - model.config.log_energy_shift), 0.0)  # MeV
        placed = hit_energy.cumsum(dim=1) - hit_energy  # the hits before
        budget = model.budget_features(placed, hit_energy.sum(dim=1), hits_left, condition)[mask]
    raw = model.energy_mixture(hit_hidden, target, upper, budget)
    largest_of = hits_left[mask] if model.config.energy.largest_of_hits_left else None
    nll = mixture_nll(raw, energy[mask], upper=upper, largest_of=largest_of).sum()
    n_targets = len(target) + len(stop)
    voxel_loss, energy_loss = ce / n_targets, nll / max(1, len(target))
    return StepOutput(
        voxel_loss + energy_loss,
        {
            "voxel_ce": float(voxel_loss.detach()),
            "energy_nll": float(energy_loss.detach()),
            "first_class_accuracy": correct / n_class,
        },
    )


def _tensors(hits: HitSequences, config: SpatialGPTConfig) -> tuple[Tensor, ...]:
    condition = condition_features(hits.incident_energy, hits.n_hits, config=config)
    return (
        torch.as_tensor(hits.voxels, dtype=torch.long),
        torch.as_tensor(hits.log_energy, dtype=torch.float32),
        torch.as_tensor(hits.mask),
        torch.as_tensor(condition),
    )


def fit_spatial_gpt(
    config: SpatialGPTConfig,
    train_hits: HitSequences,
    val_hits: HitSequences,
    training: TrainingConfig,
    run_dir: str | os.PathLike,
    *,
    progress: bool = True,
) -> tuple[SpatialGPT, TrainingResult]:
    """Train a direct model with the shared loop (resumable); returns the best-validation model and the result."""
    for name, hits in (("train", train_hits), ("validation", val_hits)):
        if len(hits) == 0 or hits.voxels.shape[1] > config.max_hits:
            msg = f"{name} showers: need at least one, each of at most max_hits = {config.max_hits} hits"
            raise ValueError(msg)
        check_order(hits, config.order, source=f"{name} showers")
        if hits.geometry != config.geometry:
            msg = (
                f"{name} showers lie on the geometry {hits.geometry.name!r}, the model's is "
                f"{config.geometry.name!r}: set SpatialGPTConfig(geometry=...) to the showers' geometry"
            )
            raise ValueError(msg)
    torch.manual_seed(training.seed)
    model = SpatialGPT(config)
    quantities = per_shower_quantities(train_hits, config.fitted_quantities, log_energy_shift=config.log_energy_shift)
    for quantity, values in quantities.items():  # for generation at an asked energy
        fit = FITTED_QUANTITIES[quantity].fit(train_hits.incident_energy, values, residuals=config.size_residuals)
        model.set_fitted(quantity, fit)
    if hasattr(model, "shower_size_correlation"):
        residuals = [model.fitted(q).standardised(train_hits.incident_energy, quantities[q]) for q in SHOWER_SIZES]
        model.shower_size_correlation.fill_(float(np.corrcoef(residuals)[0, 1]))
    train_data, val_data = _tensors(train_hits, config), _tensors(val_hits, config)
    _, log_energy, mask, condition = train_data
    with torch.no_grad():
        energy = (log_energy - model.energy_offset(condition)[:, None])[mask]
        model.trained_energy_range.copy_(torch.stack([energy.min(), energy.max()]))
    order = val_data[2].sum(dim=1).argsort(stable=True)  # validation batches of similar lengths
    val_data = tuple(t[order] for t in val_data)
    result = train(
        model, train_data, val_data, spatial_loss, training, run_dir,
        describe={"model": "SpatialGPT", "spatial_config": asdict(config)}, progress=progress,
        lengths=train_data[2].sum(dim=1),
    )  # fmt: skip
    return load_spatial_gpt(result.best_checkpoint, device=training.device), result
