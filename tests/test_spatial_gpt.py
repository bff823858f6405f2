"""Direct spatial tokens: the model and its energy strategies, both tokenizations, conditioning, and a tiny run."""

import math
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from omnijet_lib.data.hit_sequences import HitSequences, check_order, hit_sequences, showers_from_hits
from omnijet_lib.data.shower_simulation import simulate_showers
from omnijet_lib.data.showers import GRID_SIZE, Showers
from omnijet_lib.errors import BadDataError
from omnijet_lib.generation.hits import draw_shower_sizes, generate_hits, generate_showers
from omnijet_lib.models.gpt import KVCache, run_blocks
from omnijet_lib.models.shower_sizes import HitCountModel, LogNormalInEnergy
from omnijet_lib.models.spatial_gpt import SpatialGPT, SpatialGPTConfig, condition_features, load_spatial_gpt
from omnijet_lib.training import TrainingConfig
from omnijet_lib.training.spatial_gpt import fit_spatial_gpt, spatial_loss

TINY = {"embed_dim": 16, "n_heads": 2, "n_blocks": 1, "ffn_dim": 32, "n_components": 3}


@pytest.fixture(scope="module")
def showers() -> Showers:
    return simulate_showers(24, energy=(10.0, 20.0), seed=4, progress=False)


def test_energies_as_the_largest_of_the_hits_left_step_down_by_their_number(showers):
    config = SpatialGPTConfig(condition_on_n_hits=True, energy_strategy="largest_of_hits_left", **TINY)
    torch.manual_seed(0)
    model = SpatialGPT(config).eval()
    with torch.no_grad():  # every hit left: one Gaussian 1 below the bound, width 1
        model.energy_head[-1].weight.zero_()
        model.energy_head[-1].bias.copy_(torch.tensor([0.0] * 3 + [-1.0] * 3 + [0.0] * 3))
    hits = generate_hits(model, [50.0] * 20, n_hits=[200] * 20, generator=torch.Generator().manual_seed(0))
    check_order(hits, "energy")
    steps = -np.diff(hits.log_energy, axis=1)
    # the largest of n draws lies ~1/(n g) below the bound: steps grow as the hits left run out
    assert steps[:, 1:50].mean() < 0.2 * steps[:, -20:].mean()
    true = hit_sequences(showers)  # every simulated hit has a finite likelihood and gradient
    tensors = (torch.as_tensor(a) for a in (true.voxels, true.log_energy, true.mask))
    loss = spatial_loss(
        model.train(), (*tensors, torch.as_tensor(condition_features(true.incident_energy, true.n_hits, config=config)))
    ).loss
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    for wrong in ({"order": "layer"}, {"condition_on_n_hits": False}):
        with pytest.raises(ValueError, match="largest_of_hits_left needs"):
            SpatialGPTConfig(**{**asdict(config), **wrong})


@pytest.mark.parametrize("order", ["energy", "layer"])
def test_a_bounded_model_keeps_its_order_while_generating(showers, order):
    config = SpatialGPTConfig(condition_on_n_hits=True, order=order, energy_strategy="bounded", **TINY)
    torch.manual_seed(0)
    model = SpatialGPT(config).eval()
    with torch.no_grad():  # one wide component, so that an unbounded draw would often rise
        model.energy_head[-1].weight.zero_()
        model.energy_head[-1].bias.copy_(torch.tensor([0.0] * 3 + [0.0] * 3 + [1.0] * 3))

    def rises_where_bounded(hits):  # (N, L - 1): a hit above its predecessor where the order forbids it
        rising = hits.log_energy[:, 1:] > hits.log_energy[:, :-1]
        same_layer = hits.voxels[:, 1:, 2] == hits.voxels[:, :-1, 2]
        return rising & hits.mask[:, 1:] & (same_layer if order == "layer" else True)

    hits = generate_hits(model, [20.0, 80.0], n_hits=[60, 60], generator=torch.Generator().manual_seed(0))
    assert not rises_where_bounded(hits).any()
    if order == "energy":
        check_order(hits, order)
    else:  # the layer only falls after training; a new layer's first hit may exceed the one before
        assert (hits.log_energy[:, 1:] > hits.log_energy[:, :-1]).any()
    unbounded = SpatialGPT(SpatialGPTConfig(condition_on_n_hits=True, order=order, **TINY)).eval()
    unbounded.load_state_dict(model.state_dict())
    free = generate_hits(unbounded, [20.0, 80.0], n_hits=[60, 60], generator=torch.Generator().manual_seed(0))
    assert rises_where_bounded(free).any()


def test_a_bounded_head_places_its_means_below_the_previous_hit():
    config = SpatialGPTConfig(condition_on_n_hits=True, order="energy", energy_strategy="bounded", **TINY)
    torch.manual_seed(0)
    model = SpatialGPT(config).eval()
    with torch.no_grad():  # every component: 0.01 below the bound, width e^-7
        model.energy_head[-1].weight.zero_()
        model.energy_head[-1].bias.copy_(torch.tensor([0.0] * 3 + [-0.01] * 3 + [-7.0] * 3))
    hits = generate_hits(model, [50.0], n_hits=[40], generator=torch.Generator().manual_seed(0))
    steps = np.diff(hits.log_energy[0])  # after the first hit, each lies 0.01 below its predecessor
    np.testing.assert_allclose(steps, -0.01, atol=0.004)


def test_a_fitted_hottest_cell_sets_the_first_energy_of_the_chain(showers, tmp_path):
    with pytest.raises(ValueError, match="order='energy'"):
        SpatialGPTConfig(order="layer", energy_strategy="free+fitted_hottest_cell")
    config = SpatialGPTConfig(condition_on_n_hits=True, energy_strategy="bounded+fitted_hottest_cell", **TINY)
    hits = hit_sequences(showers)
    training = TrainingConfig(epochs=1, batch_size=8, seed=0)
    _, result = fit_spatial_gpt(config, hits, hits, training, tmp_path / "run", progress=False)
    model = load_spatial_gpt(result.best_checkpoint)
    hottest = np.exp(
        hits.log_energy[:, 0].astype(np.float64) - config.log_energy_shift
    )  # MeV: the first hit in energy order
    assert model.fitted("hottest_cell") == LogNormalInEnergy.fit(
        hits.incident_energy, hottest
    )  # saved with the weights
    # A known fit: log(E / MeV) = 2.5 + 0.3 log(E_inc / 30 GeV), width 0.1.  The draws follow it, whatever the head.
    model.set_fitted("hottest_cell", LogNormalInEnergy((0.0, 0.3, 2.5), (0.0, 0.0, 0.1)))
    incident = np.repeat([10.0, 90.0], 1000)
    generated = generate_hits(model, incident, n_hits=2, generator=torch.Generator().manual_seed(0))
    first = generated.log_energy[:, 0] - config.log_energy_shift
    for energy in (10.0, 90.0):
        drawn = first[incident == energy]
        assert abs(drawn.mean() - (2.5 + 0.3 * np.log(energy / 30.0))) < 0.02
        assert abs(drawn.std() - 0.1) < 0.01
    assert (generated.log_energy[:, 1] <= generated.log_energy[:, 0]).all()  # the chain follows below it


def test_the_energy_budget_is_read_the_same_in_training_and_generation(monkeypatch):
    with pytest.raises(ValueError, match="condition_on_n_hits"):
        SpatialGPTConfig(energy_strategy="free+energy_budget")
    config = SpatialGPTConfig(condition_on_n_hits=True, energy_strategy="bounded+energy_budget", **TINY)
    torch.manual_seed(0)
    model = SpatialGPT(config).eval()
    incident, asked = np.array([20.0, 70.0]), np.array([15, 9])
    cond = torch.as_tensor(condition_features(incident, asked, config=config))
    seen, mixture = [], model.energy_mixture

    def record(hidden, voxels, upper, budget=None):
        seen.append(budget.clone())
        return mixture(hidden, voxels, upper, budget)

    def expected(hits, visible):  # (N, L, 2) the budget features by hand
        energy = np.where(hits.mask, np.exp(hits.log_energy.astype(np.float64) - 1.0), 0.0)  # MeV
        placed = np.cumsum(energy, axis=1) - energy  # the hits before each
        hits_left = np.maximum(asked[:, None] - np.arange(hits.mask.shape[1]), 1)  # padding: any
        per_hit = np.log(np.maximum(visible[:, None] - placed, 1e-3) / hits_left)
        per_hit += 1.0 - model.energy_offset(cond).numpy()[:, None]  # in the model's units
        return np.stack([placed / visible[:, None], per_hit], axis=-1)[hits.mask]

    monkeypatch.setattr(model, "energy_mixture", record)
    with pytest.raises(ValueError, match="give visible_energy"):
        generate_hits(model, incident, n_hits=asked)
    visible = np.array([300.0, 40.0])  # MeV; the second is overspent, and reads as 1 keV left
    generated = generate_hits(
        model, incident, n_hits=asked, visible_energy=visible, generator=torch.Generator().manual_seed(0)
    )
    assert seen[-1].shape == (1, 2)  # the shorter shower has left the batch
    while_generating = torch.stack([torch.cat([b, b.new_zeros(2 - len(b), 2)]) for b in seen], dim=1)  # (2, 15, 2)
    np.testing.assert_allclose(
        while_generating.numpy()[generated.mask], expected(generated, visible), rtol=1e-4, atol=1e-4
    )
    seen.clear()  # the loss reads the same features off the true hits, whose budget is their own sum
    tensors = (torch.as_tensor(a) for a in (generated.voxels, generated.log_energy, generated.mask))
    spatial_loss(model, (*tensors, cond))
    own_sum = np.where(generated.mask, np.exp(generated.log_energy.astype(np.float64) - 1.0), 0.0).sum(axis=1)
    np.testing.assert_allclose(seen[0].numpy(), expected(generated, own_sum), rtol=1e-4, atol=1e-4)


def test_a_rescaled_shower_sums_to_its_visible_energy_and_keeps_its_shape():
    config = SpatialGPTConfig(condition_on_n_hits=True, energy_strategy="free+rescale_to_visible_energy", **TINY)
    torch.manual_seed(0)
    model = SpatialGPT(config).eval()
    free = SpatialGPT(replace(config, energy_strategy="free")).eval()
    free.load_state_dict({k: v for k, v in model.state_dict().items() if k in free.state_dict()})  # no fits
    visible = np.array([300.0, 900.0])
    scaled, unscaled = (
        generate_hits(m, [20.0, 80.0], n_hits=[30, 50], visible_energy=visible, generator=torch.Generator().manual_seed(0))
        for m in (model, free)
    )  # fmt: skip
    hit_sum = np.where(scaled.mask, np.exp(scaled.log_energy.astype(np.float64) - 1.0), 0.0).sum(axis=1)
    np.testing.assert_allclose(hit_sum, visible, rtol=1e-4)
    for row in range(2):  # every hit of a shower moves by the same log factor
        shift = (scaled.log_energy - unscaled.log_energy)[row][scaled.mask[row]]
        np.testing.assert_allclose(shift, shift.mean(), atol=1e-4)
    assert np.array_equal(scaled.voxels, unscaled.voxels)  # one factor per shower: where and how, unchanged
    kept = generate_hits(model, [20.0, 80.0], n_hits=[30, 50], visible_energy=visible, rescale=False,
                         generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert np.array_equal(kept.log_energy, unscaled.log_energy)  # the chain's own scale, on request
    with pytest.raises(ValueError, match="give visible_energy"):
        generate_hits(model, [20.0], n_hits=[30])


def test_anchor_noise_blurs_the_means_in_training_only(showers):
    with pytest.raises(ValueError, match="anchor_noise"):
        SpatialGPTConfig(energy_strategy="bounded", anchor_noise=-0.1)
    with pytest.raises(ValueError, match="anchor_noise blurs the bound"):  # a strategy without one: nothing to blur
        SpatialGPTConfig(energy_strategy="free+energy_budget", condition_on_n_hits=True, anchor_noise=0.1)
    config = SpatialGPTConfig(condition_on_n_hits=True, energy_strategy="bounded", anchor_noise=0.5, **TINY)
    torch.manual_seed(0)
    model = SpatialGPT(config)
    hidden, voxels = torch.randn(5, config.embed_dim), torch.zeros((5, 3), dtype=torch.long)
    upper = torch.tensor([math.inf, 1.0, 0.5, 0.0, -1.0])
    model.eval()
    assert torch.equal(model.energy_mixture(hidden, voxels, upper), model.energy_mixture(hidden, voxels, upper))
    model.train()
    first, second = model.energy_mixture(hidden, voxels, upper), model.energy_mixture(hidden, voxels, upper)
    assert torch.equal(first[0], second[0])  # no bound, nothing to blur
    assert not torch.allclose(first[1:], second[1:])
    # the cut stays at the true bound: every training hit keeps a finite likelihood
    hits = hit_sequences(showers)
    tensors = (torch.as_tensor(a) for a in (hits.voxels, hits.log_energy, hits.mask))
    cond = torch.as_tensor(condition_features(hits.incident_energy, hits.n_hits, config=config))
    assert torch.isfinite(spatial_loss(model, (*tensors, cond)).loss)


def test_training_hits_must_be_in_the_configured_order(showers, tmp_path):
    config = SpatialGPTConfig(order="energy", **TINY)
    hits = hit_sequences(showers[:8], order="layer")
    with pytest.raises(BadDataError, match="train showers are not ordered by energy"):
        fit_spatial_gpt(config, hits, hits, TrainingConfig(epochs=1), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="order must be one of"):
        SpatialGPTConfig(order="radius")


@pytest.mark.parametrize("tokenization", ["joint", "per_axis"])
def test_shapes_loss_and_generation_of_both_tokenizations(showers, tokenization):
    config = SpatialGPTConfig(tokenization=tokenization, **TINY)
    torch.manual_seed(0)
    model = SpatialGPT(config)
    hits = hit_sequences(showers[:4])
    batch = (torch.as_tensor(hits.voxels), torch.as_tensor(hits.log_energy), torch.as_tensor(hits.mask),
             torch.as_tensor(condition_features(hits.incident_energy, config=config)))  # fmt: skip
    hidden = model.hidden_states(*[batch[i] for i in (0, 1)], batch[3])
    assert hidden.shape == (4, hits.voxels.shape[1] + 1, 16)
    out = spatial_loss(model, batch)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())  # every head takes part
    # padding never changes the loss
    padded = tuple(
        torch.cat([t, torch.zeros_like(t[:, :5])], 1) if t.ndim > 1 and i < 3 else t for i, t in enumerate(batch)
    )
    assert spatial_loss(model, padded).loss.item() == pytest.approx(out.loss.item(), rel=1e-6)

    generated = generate_hits(model, [10.0, 60.0, 90.0], max_hits=30, generator=torch.Generator().manual_seed(1))
    assert isinstance(generated, HitSequences) and len(generated) == 3
    assert generated.voxels.shape[1] <= 30 and generated.voxels.shape[2] == 3
    voxels = generated.voxels[generated.mask]
    assert voxels.min() >= 0 and voxels.max() <= GRID_SIZE - 1
    low, high = config.log_energy_range
    energies = generated.log_energy[generated.mask]
    assert np.isfinite(energies).all() and energies.min() >= low and energies.max() <= high
    # seeds make it reproducible; the cache gives what the full recomputation gives
    again = generate_hits(model, [10.0, 60.0, 90.0], max_hits=30, generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(again.voxels, generated.voxels)
    np.testing.assert_array_equal(again.log_energy, generated.log_energy)


@pytest.mark.parametrize("condition_on_n_hits", [False, True])
def test_cached_generation_matches_full_recomputation(condition_on_n_hits):
    config = SpatialGPTConfig(condition_on_n_hits=condition_on_n_hits, **TINY)
    torch.manual_seed(0)
    model = SpatialGPT(config).eval()
    asked = [12] if condition_on_n_hits else None
    generated = generate_hits(model, [40.0], n_hits=asked, max_hits=12, generator=torch.Generator().manual_seed(3))
    n = int(generated.n_hits[0])
    vox, energy = torch.as_tensor(generated.voxels[:, :n]), torch.as_tensor(generated.log_energy[:, :n])
    cond = torch.as_tensor(condition_features([40.0], asked, config=config))
    with torch.no_grad():
        full = model.hidden_states(vox, energy, cond)  # all positions at once, no cache
        # step by step through the cache, each hit embedded as generate_hits embeds it
        cache = KVCache(config.blocks, 1, device="cpu", max_length=n + 1)
        steps = [run_blocks(model.blocks, model.start_input(cond), cache, max_length=n + 1)[:, -1]]
        for j in range(n):
            step = model.hit_inputs(vox[:, j : j + 1], energy[:, j : j + 1], cond, first=j + 1)
            steps.append(run_blocks(model.blocks, step, cache, max_length=n + 1)[:, -1])
    assert n >= 1 and full.shape[1] == n + 1
    if condition_on_n_hits:
        assert n == 12  # exactly the hits asked for
    torch.testing.assert_close(torch.stack(steps, dim=1), full, rtol=1e-4, atol=1e-5)


def test_conditioning_changes_the_output():
    config = SpatialGPTConfig(condition_on_n_hits=True, **TINY)
    torch.manual_seed(0)
    model = SpatialGPT(config).eval()
    vox, energy = torch.zeros((2, 3, 3), dtype=torch.long), torch.zeros((2, 3))
    cond = torch.as_tensor(condition_features([10.0, 90.0], [100, 1000], config=config))
    hidden = model.hidden_states(vox, energy, cond)
    assert not torch.allclose(hidden[0], hidden[1])  # same hits, other energy: other predictions
    with pytest.raises(BadDataError, match="incident energy"):
        condition_features([0.0], [100], config=config)
    with pytest.raises(ValueError, match="give n_hits"):
        condition_features([10.0], config=config)


def test_a_model_conditioned_on_hits_gives_the_hits_asked_for():
    config = SpatialGPTConfig(condition_on_n_hits=True, **TINY)
    torch.manual_seed(0)
    model = SpatialGPT(config).eval()
    with torch.no_grad():
        model.z_head.linear.bias[-1] = 10.0  # STOP would win almost always: it must not be drawn
    asked = np.array([1, 7, 30, 3])
    hits = generate_hits(model, [10.0, 20.0, 50.0, 90.0], n_hits=asked, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(hits.n_hits, asked)
    with pytest.raises(ValueError, match="more than max_hits"):
        generate_hits(model, [10.0], n_hits=[40], max_hits=30)


def test_a_model_conditioned_on_hits_scales_hit_energies_with_incident_energy_per_hit():
    config = SpatialGPTConfig(condition_on_n_hits=True, **TINY)
    torch.manual_seed(0)
    model = SpatialGPT(config).eval()
    last = model.energy_head[-1]
    with torch.no_grad():  # every component: mean 0.5, width e^-7, in the model's units
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0] * 3 + [0.5] * 3 + [-7.0] * 3))
    energy, asked = np.array([10.0, 90.0, 90.0]), np.array([100, 100, 900])
    hits = generate_hits(model, energy, n_hits=asked, generator=torch.Generator().manual_seed(0))
    expected = 0.5 + np.log(energy / 30.0) - np.log(asked / 500.0)  # log(E_hit) - log(E_inc / n) is what it learns
    for row in range(3):
        np.testing.assert_allclose(hits.log_energy[row, : asked[row]], expected[row], atol=0.01)


def test_hit_count_and_visible_energy_are_drawn_together():
    config = SpatialGPTConfig(condition_on_n_hits=True, energy_strategy="free+rescale_to_visible_energy", **TINY)
    model = SpatialGPT(config)
    model.set_fitted("hit_count", HitCountModel((0.0, 0.8, 6.0), (0.0, 0.0, 0.1)))
    model.set_fitted("visible_energy", LogNormalInEnergy((0.0, 1.0, 7.0), (0.0, 0.0, 0.08)))
    model.shower_size_correlation.fill_(0.9)
    energy = np.full(20_000, 50.0)
    n, visible = draw_shower_sizes(model, energy, rng=np.random.default_rng(0))
    assert n.dtype == np.int64
    x = math.log(50.0 / 30.0)
    assert np.log(visible).mean() == pytest.approx(7.0 + x, abs=0.005)
    assert np.log(visible).std() == pytest.approx(0.08, rel=0.03)
    assert np.corrcoef(np.log(n), np.log(visible))[0, 1] == pytest.approx(0.9, abs=0.02)
    # a hit count asked for two widths above its mean sets the visible energy 0.9 * 2 widths above its own
    asked = np.full(20_000, math.exp(6.0 + 0.8 * x + 2 * 0.1))
    same_n, visible = draw_shower_sizes(model, energy, n_hits=asked, rng=np.random.default_rng(1))
    assert np.array_equal(same_n, asked)
    assert np.log(visible).mean() == pytest.approx(7.0 + x + 0.9 * 2 * 0.08, abs=0.005)
    assert np.log(visible).std() == pytest.approx(0.08 * math.sqrt(1 - 0.9**2), rel=0.05)
    plain = SpatialGPT(SpatialGPTConfig(**TINY))  # a model that needs neither draws neither
    assert draw_shower_sizes(plain, energy[:3], rng=np.random.default_rng(0)) == (None, None)


def test_tiny_run_trains_saves_and_generates(showers, tmp_path):
    config = SpatialGPTConfig(**TINY)
    hits = hit_sequences(showers)
    training = TrainingConfig(epochs=2, batch_size=8, learning_rate=3e-3, seed=0)
    model, result = fit_spatial_gpt(config, hits, hits, training, tmp_path / "run", progress=False)
    assert result.history[-1]["val_loss"] < result.history[0]["train_loss"]  # it learns
    loaded = load_spatial_gpt(result.best_checkpoint)
    assert loaded.config == config
    trained = hits.log_energy[hits.mask]
    np.testing.assert_allclose(loaded.trained_energy_range.numpy(), [trained.min(), trained.max()])
    generated = generate_hits(loaded, [15.0, 15.0], max_hits=50, generator=torch.Generator().manual_seed(0))
    sampled = generated.log_energy[generated.mask]  # never outside the training hits' range
    assert trained.min() - 1e-6 <= sampled.min() and sampled.max() <= trained.max() + 1e-6
    gen_showers = showers_from_hits(generated)
    assert len(gen_showers) == 2 and np.all(gen_showers.incident_energy == 15.0)
    with pytest.raises(ValueError, match="not a direct-spatial-token checkpoint"):
        from omnijet_lib.models.gpt import GPTConfig
        from omnijet_lib.training.gpt import fit_gpt

        seq = np.array([[0, 1, 2, 3], [0, 2, 3, -1]])
        _, gpt_result = fit_gpt(GPTConfig(codebook_size=2, embed_dim=8, n_heads=2, n_blocks=1, ffn_dim=8, max_length=4),
                                seq, seq, TrainingConfig(epochs=1, batch_size=2), tmp_path / "gpt", progress=False)  # fmt: skip
        load_spatial_gpt(gpt_result.best_checkpoint)


def test_showers_stopped_before_their_first_hit_are_left_out():
    torch.manual_seed(0)
    model = SpatialGPT(SpatialGPTConfig(**TINY, max_hits=20)).eval()
    with torch.no_grad():
        model.z_head.linear.bias[-1] = 3.4  # STOP about as likely as all 30 layers together
    showers, kept = generate_showers(model, np.linspace(10, 90, 40), batch_size=16, seed=0, progress=False)
    assert 0 < len(kept) < 40 and len(showers) == len(kept)
    assert np.all(showers.n_hits > 0)
    np.testing.assert_array_equal(showers.incident_energy, np.linspace(10, 90, 40)[kept].astype(np.float32))


def test_a_saved_model_conditioned_on_hits_draws_them_for_an_asked_energy(showers, tmp_path):
    config = SpatialGPTConfig(
        condition_on_n_hits=True, order="layer", energy_strategy="free+rescale_to_visible_energy", **TINY
    )
    hits = hit_sequences(showers, order="layer")
    training = TrainingConfig(epochs=1, batch_size=8, seed=0)
    _, result = fit_spatial_gpt(config, hits, hits, training, tmp_path / "run", progress=False)
    loaded = load_spatial_gpt(result.best_checkpoint)
    assert loaded.fitted("hit_count") == HitCountModel.fit(hits.incident_energy, hits.n_hits)  # saved with the weights
    # more hits, more visible energy: at 10-20 GeV the simulator's correlate strongly, and the fit keeps that
    assert 0.5 < float(loaded.shower_size_correlation) < 1.0
    old = torch.load(result.best_checkpoint, weights_only=True)  # a checkpoint from before the joint draw
    del old["model"]["shower_size_correlation"]
    torch.save(old, tmp_path / "old.pt")
    assert float(load_spatial_gpt(tmp_path / "old.pt").shower_size_correlation) == 0.0  # drawn independently
    # a checkpoint from before energy strategies, with one flag per idea, loads as the strategy they made
    flags = dict.fromkeys(
        ("bounded_by_previous", "largest_of_hits_left", "fitted_hottest_cell", "energy_budget"), False
    )
    spatial_config = {k: v for k, v in old["describe"]["spatial_config"].items() if k != "energy_strategy"}
    old["describe"]["spatial_config"] = {**spatial_config, **flags, "rescale_to_visible_energy": True}
    torch.save(old, tmp_path / "flags.pt")
    assert load_spatial_gpt(tmp_path / "flags.pt").config == loaded.config
    generated, kept = generate_showers(loaded, [12.0, 18.0], batch_size=2, seed=0, progress=False)
    asked = loaded.fitted("hit_count").sample([12.0, 18.0], max_hits=config.max_hits, rng=np.random.default_rng(0))
    assert len(kept) == 2
    # voxelising keeps the hit count; a hit-count draw lies in the simulated range
    np.testing.assert_array_equal(generated.n_hits, asked)
    assert hits.n_hits.min() * 0.7 < asked.min() and asked.max() < hits.n_hits.max() * 1.3


def test_a_model_with_empirical_size_residuals_saves_and_draws_from_them(showers, tmp_path):
    config = SpatialGPTConfig(
        condition_on_n_hits=True, energy_strategy="largest_of_hits_left+fitted_hottest_cell+rescale_to_visible_energy",
        size_residuals="empirical", **TINY,
    )  # fmt: skip
    hits = hit_sequences(showers, order="energy")
    _, result = fit_spatial_gpt(
        config, hits, hits, TrainingConfig(epochs=1, batch_size=8), tmp_path / "run", progress=False
    )
    loaded = load_spatial_gpt(result.best_checkpoint)
    expected = HitCountModel.fit(hits.incident_energy, hits.n_hits, residuals="empirical")
    assert loaded.fitted("hit_count") == expected and len(expected.residual_quantiles) == 101
    assert all(len(loaded.fitted(q).residual_quantiles) == 101 for q in ("visible_energy", "hottest_cell"))
    drawn, _ = draw_shower_sizes(loaded, np.full(2000, 15.0), rng=np.random.default_rng(0))
    # draws stay within the training's residuals: never fewer hits than the fit allows at the lowest quantile
    lowest = expected.at(15.0, -10.0)  # beyond the first level: the smallest training residual
    assert drawn.min() >= np.floor(lowest)
    showers_out, _ = generate_showers(loaded, [15.0, 15.0], batch_size=2, seed=0, progress=False)
    assert len(showers_out) == 2
    with pytest.raises(ValueError, match="size_residuals must be one of"):
        SpatialGPTConfig(size_residuals="kde", **TINY)
