"""The GPT backbone: the cache reproduces full recomputation, padding is invisible, training learns."""

import math

import numpy as np
import pytest
import torch
from conftest import markov_sequences

from omnijet_lib.checkpoints import CHECKPOINT_KEYS
from omnijet_lib.models.gpt import GPT, GPTConfig, KVCache, chunked_cross_entropy, load_gpt
from omnijet_lib.tokenizers.tokens import PAD
from omnijet_lib.training import TrainingConfig
from omnijet_lib.training.gpt import fit_gpt, next_token_loss

SMALL = GPTConfig(codebook_size=40, embed_dim=32, n_heads=4, n_blocks=2, ffn_dim=64, max_length=24)


def small_gpt(seed: int = 0, config: GPTConfig = SMALL) -> GPT:
    torch.manual_seed(seed)
    return GPT(config).eval()


def random_sequences(n: int, length: int, config: GPTConfig = SMALL, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    body = torch.randint(1, config.codebook_size + 1, (n, length - 1), generator=g)
    return torch.cat([torch.zeros(n, 1, dtype=torch.long), body], dim=1)


def test_config_checks_and_vocabulary():
    assert SMALL.vocab_size == 42 and SMALL.stop_token == 41
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(embed_dim=30, n_heads=4)
    with pytest.raises(ValueError, match="n_blocks"):
        GPTConfig(n_blocks=0)


def test_paper_size_parameter_count():
    # 3 blocks of (4 d^2 + 2 d f) weights plus embedding and head over 8194 tokens
    model = GPT(GPTConfig())
    d, f, v = 256, 1024, 8194
    weights = 3 * (4 * d * d + 2 * d * f) + 2 * v * d
    assert weights < model.n_parameters() < weights + 20_000  # + biases and LayerNorms


@pytest.mark.parametrize("trial", range(4))
def test_cached_logits_equal_full_recomputation(trial):
    rng = np.random.default_rng(trial)
    model = small_gpt(trial)
    batch, length = int(rng.integers(1, 6)), int(rng.integers(2, SMALL.max_length + 1))
    prefix = int(rng.integers(1, length))  # first call fills the cache with several tokens at once
    sequences = random_sequences(batch, length, seed=trial)
    with torch.no_grad():
        full = model(sequences)
        cache = KVCache(SMALL, batch, device="cpu")
        steps = [model(sequences[:, :prefix], cache)]
        steps += [model(sequences[:, t : t + 1], cache) for t in range(prefix, length)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def test_cache_keeps_only_chosen_rows():
    model = small_gpt()
    sequences = random_sequences(5, 12)
    keep = torch.tensor([0, 3, 4])
    with torch.no_grad():
        full = model(sequences[keep])
        cache = KVCache(SMALL, 5, device="cpu")
        first = model(sequences[:, :6], cache)[keep]
        cache.keep(keep)
        rest = [model(sequences[keep, t : t + 1], cache) for t in range(6, 12)]
    assert torch.allclose(torch.cat([first, *rest], dim=1), full, atol=1e-5, rtol=0)


def test_cache_refuses_several_new_tokens_and_overflow():
    model = small_gpt()
    cache = KVCache(SMALL, 2, device="cpu")
    with torch.no_grad():
        model(random_sequences(2, 3), cache)
        with pytest.raises(ValueError, match="one new token"):
            model(random_sequences(2, 2), cache)
        with pytest.raises(ValueError, match="max_length"):
            model(random_sequences(1, SMALL.max_length + 1))


def test_padding_never_changes_real_positions():
    model = small_gpt()
    sequences = random_sequences(3, 16)
    lengths = [16, 9, 4]
    padded = sequences.clone()
    other = sequences.clone()
    for row, n in enumerate(lengths):
        padded[row, n:] = PAD
        other[row, n:] = torch.randint(1, 41, (16 - n,))  # anything at all after the end
    with torch.no_grad():
        a, b = model(padded), model(other)
    for row, n in enumerate(lengths):
        assert torch.allclose(a[row, :n], b[row, :n], atol=1e-6)


def test_loss_counts_only_real_targets():
    model = small_gpt()
    sequences = random_sequences(2, 12)
    sequences[1, 7:] = PAD
    with torch.no_grad():
        batch_loss = next_token_loss(model, (sequences,)).loss
        # the same mean, one real target at a time
        per_token = []
        for row, n in ((0, 12), (1, 7)):
            logits = model(sequences[row : row + 1, : n - 1])[0]
            per_token.append(torch.nn.functional.cross_entropy(logits, sequences[row, 1:n], reduction="none"))
    assert torch.isclose(batch_loss, torch.cat(per_token).mean(), atol=1e-6)


def test_chunked_loss_equals_the_whole_in_value_and_gradient():
    # A shower vocabulary cannot hold batch x length x vocab logits at once; chunks
    # under checkpointing must give the same loss and the same gradients.
    model = small_gpt().train()
    hidden = torch.randn(50, SMALL.embed_dim, requires_grad=True)
    targets = torch.randint(0, SMALL.vocab_size, (50,))
    results = []
    for max_elements in (10**9, 7 * SMALL.vocab_size):  # one chunk; eight chunks of 7 rows
        model.zero_grad()
        hidden.grad = None
        loss, correct = chunked_cross_entropy(model.head, hidden, targets, max_elements=max_elements)
        loss.backward()
        results.append((loss.detach(), correct, hidden.grad.clone(), model.head.linear.weight.grad.clone()))
    (loss_a, correct_a, grad_a, weight_a), (loss_b, correct_b, grad_b, weight_b) = results
    assert correct_a == correct_b
    assert torch.allclose(loss_a, loss_b, rtol=1e-5)
    assert torch.allclose(grad_a, grad_b, atol=1e-6) and torch.allclose(weight_a, weight_b, atol=1e-5)
    assert torch.isclose(loss_a, torch.nn.functional.cross_entropy(model.head(hidden), targets, reduction="sum"))


def test_short_training_lowers_validation_loss_and_loads_back(tmp_path):
    train, val = markov_sequences(400, SMALL, 0), markov_sequences(100, SMALL, 1)
    training = TrainingConfig(epochs=3, batch_size=32, learning_rate=3e-3, seed=0, device="cpu")
    untrained = small_gpt(0)
    with torch.no_grad():
        before = next_token_loss(untrained, (torch.as_tensor(val),)).loss.item()
    model, result = fit_gpt(SMALL, train, val, training, tmp_path / "run", progress=False)
    assert before > 0.9 * math.log(SMALL.vocab_size)  # untrained: close to uniform
    assert result.best_val_loss < 0.6 * before
    loaded = load_gpt(result.best_checkpoint, device="cpu")
    probe = torch.as_tensor(val[:4])
    with torch.no_grad():
        assert torch.equal(loaded(probe), model.to("cpu")(probe))


def test_fit_refuses_tokens_outside_the_vocabulary(tmp_path):
    bad = markov_sequences(20, SMALL, 0)
    bad[0, 1] = SMALL.vocab_size  # a token file of a bigger tokenizer
    training = TrainingConfig(epochs=1, batch_size=8, device="cpu")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        fit_gpt(SMALL, bad, bad, training, tmp_path / "run", progress=False)


def test_load_gpt_refuses_other_checkpoints(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({key: 0 for key in CHECKPOINT_KEYS} | {"describe": {"classifier": "DeepSets"}}, path)
    with pytest.raises(ValueError, match="not a GPT checkpoint"):
        load_gpt(path)


def test_validation_loss_is_the_per_token_cross_entropy(tmp_path):
    """The epoch's validation loss is the cross-entropy over every real target token, not a mean of batch means.

    Validation batches hold sequences of very different lengths (3 to 22 codes), so weighting each
    batch by its number of sequences would give another number.
    """
    import torch.nn.functional as F

    train, val = markov_sequences(120, SMALL, 0), markov_sequences(50, SMALL, 1)
    training = TrainingConfig(epochs=1, batch_size=16, device="cpu", seed=0)
    model, result = fit_gpt(SMALL, train, val, training, tmp_path / "run", progress=False)
    sequences = torch.as_tensor(val)
    with torch.no_grad():
        logits = model(sequences[:, :-1])
    targets = sequences[:, 1:]
    real = targets != PAD
    direct = F.cross_entropy(logits[real], targets[real]).item()
    assert result.history[0]["val_loss"] == pytest.approx(direct, rel=1e-5)
    accuracy = (logits[real].argmax(-1) == targets[real]).float().mean().item()
    assert result.history[0]["val_token_accuracy"] == pytest.approx(accuracy, rel=1e-5)
    # per sequence, as before, it differs: the check above can fail
    per_sequence = np.mean([F.cross_entropy(logits[i][real[i]], targets[i][real[i]]).item() for i in range(len(val))])
    assert abs(per_sequence - direct) > 1e-3


def test_a_multiplicity_first_gpt_learns_its_multiplicity_and_its_backbone_classifies():
    # The loss includes predicting M(n) after START: its only input is START, so a trained
    # model's P(M(n)) must approach the training sample's multiplicity frequencies.
    from omnijet_lib.models.token_classifier import TokenClassifier, TokenClassifierConfig

    config = GPTConfig(**{**SMALL.__dict__, "multiplicity_token": True})
    stop = config.stop_token
    g = torch.Generator().manual_seed(0)
    n = torch.tensor([3] * 60 + [8] * 30 + [15] * 10)
    sequences = torch.full((len(n), config.max_length), PAD)
    sequences[:, 0] = 0
    for row, k in enumerate(n):
        sequences[row, 1 : k + 1] = torch.randint(1, config.codebook_size + 1, (int(k),), generator=g)
        sequences[row, k + 1] = stop
    model = small_gpt(config=config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = next_token_loss(model, (sequences,)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        logits = model(torch.zeros(1, 1, dtype=torch.long))[0, -1, config.first_multiplicity_token :]
    p = torch.softmax(logits, dim=0)
    assert torch.allclose(p[[3, 8, 15]], torch.tensor([0.6, 0.3, 0.1]), atol=0.05)

    classifier = TokenClassifier(TokenClassifierConfig(gpt=config, n_classes=2))
    classifier.backbone.load_state_dict(model.backbone.state_dict())
    assert classifier(sequences[:4]).shape == (4, 2)


class SequenceRows:
    """A row source without lengths (fit_gpt counts them while it checks): sequences read as needed."""

    def __init__(self, sequences):
        self.sequences = torch.as_tensor(sequences)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index) -> torch.Tensor:
        return self.sequences[index].clone()


def test_fit_on_row_sources_equals_fit_on_arrays(tmp_path, monkeypatch):
    from omnijet_lib.training import gpt

    monkeypatch.setattr(gpt, "CHECK_ROWS", 32)  # several chunks in the check
    train, val = markov_sequences(120, SMALL, 0), markov_sequences(50, SMALL, 1)
    training = TrainingConfig(epochs=2, batch_size=16, device="cpu", seed=0)
    model_a, result_a = fit_gpt(SMALL, train, val, training, tmp_path / "a", progress=False)
    model_b, result_b = fit_gpt(SMALL, SequenceRows(train), SequenceRows(val), training, tmp_path / "b", progress=False)
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in result_a.history] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in result_b.history
    ]
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)

    bad = markov_sequences(100, SMALL, 2)
    bad[70, 1] = SMALL.vocab_size
    with pytest.raises(ValueError, match="train sequences 64..95 hold tokens .* outside the vocabulary"):
        fit_gpt(SMALL, SequenceRows(bad), SequenceRows(val), training, tmp_path / "c", progress=False)


def test_condition_tokens_are_inserted_in_order_and_the_jet_pt_is_required():
    from omnijet_lib.models.gpt import with_condition_tokens

    config = GPTConfig(**{**SMALL.__dict__, "multiplicity_token": True, "jet_pt_edges": [550, 650.0]})
    assert config.jet_pt_edges == (550.0, 650.0) and config.n_jet_pt_bins == 3
    assert config.first_jet_pt_token == config.first_multiplicity_token + config.max_length - 1
    assert config.vocab_size == config.first_jet_pt_token + 3 and config.positions == config.max_length + 2
    stop = config.stop_token
    sequences = torch.tensor([[0, 5, 9, stop, PAD], [0, 4, stop, PAD, PAD], [0, 7, stop, PAD, PAD]])
    jet_pt = torch.tensor([549.0, 550.0, 900.0])  # an edge belongs to the bin above it
    m, p = config.first_multiplicity_token, config.first_jet_pt_token
    expected = torch.tensor(
        [[0, m + 2, p + 0, 5, 9, stop, PAD], [0, m + 1, p + 1, 4, stop, PAD, PAD], [0, m + 1, p + 2, 7, stop, PAD, PAD]]
    )
    assert torch.equal(with_condition_tokens(sequences, config, jet_pt), expected)
    with pytest.raises(ValueError, match="jet_pt"):
        with_condition_tokens(sequences, config)
    for edges in ([600, 500], [500, float("nan")], ["a"]):
        with pytest.raises(ValueError, match="jet_pt_edges"):
            GPTConfig(jet_pt_edges=edges)


def test_a_gpt_told_the_jet_pt_generates_the_constituents_of_that_pt(tmp_path):
    """Low-pT jets hold code token 1 only, high-pT jets token 4: the pT bin alone tells them apart.

    Trained with the pT token, the GPT generates token-1 jets when given low jet pTs
    and token-4 jets for high ones; without it, it could only mix the two.
    """
    from omnijet_lib.generation import generate_sequences

    config = GPTConfig(
        codebook_size=4, embed_dim=16, n_heads=2, n_blocks=1, ffn_dim=32, max_length=6,
        multiplicity_token=True, jet_pt_edges=(600.0,),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    jet_pt = rng.uniform(500, 700, 512).astype(np.float32)
    code = np.where(jet_pt < 600, 1, 4)
    sequences = np.stack([[0, c, c, c, config.stop_token, PAD] for c in code])
    training = TrainingConfig(epochs=15, batch_size=64, learning_rate=1e-2, seed=0, device="cpu")
    with pytest.raises(ValueError, match="train_jet_pt"):
        fit_gpt(config, sequences, sequences, training, tmp_path / "run", progress=False)
    model, _ = fit_gpt(
        config, sequences, sequences, training, tmp_path / "run", progress=False,
        train_jet_pt=jet_pt, val_jet_pt=jet_pt,
    )  # fmt: skip
    n = np.full(200, 3)
    for pt, wanted in ((550.0, 1), (650.0, 4)):
        generated = generate_sequences(model, 200, seed=1, progress=False, multiplicities=n, jet_pt=np.full(200, pt))
        codes = generated[:, 1:4]
        assert (codes == wanted).mean() > 0.95, (pt, np.unique(codes, return_counts=True))
    # Both drawn by the model: its P(pT bin) is about half and half, and each jet stays pure.
    generated = generate_sequences(model, 400, seed=2, progress=False)
    n_generated = ((generated > 0) & (generated < config.stop_token)).sum(axis=1)
    pure = [(row[1 : k + 1] == row[1]).all() for row, k in zip(generated, n_generated)]
    assert np.mean(pure) > 0.9 and 0.3 < np.mean(generated[:, 1] == 1) < 0.7
    with pytest.raises(ValueError, match="together"):  # n from the model but the pT from a pool
        generate_sequences(model, 5, progress=False, jet_pt=np.full(5, 550.0))
    with pytest.raises(ValueError, match="same jets"):
        generate_sequences(model, 5, progress=False, multiplicities=n, jet_pt=np.full(5, 550.0))


def test_a_run_written_before_the_jet_pt_token_resumes(tmp_path):
    """Its checkpoints describe a GPTConfig without jet_pt_edges; a GPT without pT bins continues them."""
    from omnijet_lib.checkpoints import load_checkpoint

    train, val = markov_sequences(64, SMALL, 0), markov_sequences(16, SMALL, 1)
    fit_gpt(SMALL, train, val, TrainingConfig(epochs=1, batch_size=16, device="cpu"), tmp_path, progress=False)
    for name in ("last.pt", "best.pt"):
        saved = load_checkpoint(tmp_path / name)
        # not described when off, as by runs from before the jet pT token; the multiplicity token always is
        assert "jet_pt_edges" not in saved["describe"]["gpt_config"]
        assert saved["describe"]["gpt_config"]["multiplicity_token"] is False
    _, result = fit_gpt(
        SMALL, train, val, TrainingConfig(epochs=2, batch_size=16, device="cpu"), tmp_path, progress=False
    )
    assert len(result.history) == 2


def test_count_down_indices_and_cached_generation_equal_full_recomputation():
    """Each position embeds 1 + the constituents still to come; generation step by step gives what the whole sequence gives."""
    from omnijet_lib.generation import generate_sequences
    from omnijet_lib.models.gpt import constituents_to_come, with_condition_tokens

    config = GPTConfig(**{**SMALL.__dict__, "multiplicity_token": True, "count_down": True})
    stop, m = config.stop_token, config.first_multiplicity_token
    sequences = torch.tensor([[0, m + 3, 5, 9, 7, stop, PAD], [0, m + 1, 4, stop, PAD, PAD, PAD]])
    expected = torch.tensor([[0, 4, 3, 2, 1, 1, 1], [0, 2, 1, 1, 1, 1, 1]])  # at STOP and PAD: none to come
    assert torch.equal(constituents_to_come(sequences, config), expected)
    with pytest.raises(ValueError, match="count_down"):
        GPTConfig(count_down=True)  # n must be drawn first
    model = small_gpt(3, config)
    seen = []  # the count-down indices generation feeds, step by step
    forward = model.backbone.forward

    def recording(tokens, cache=None, to_come=None):
        seen.append(constituents_to_come(tokens, config) if to_come is None else to_come)
        return forward(tokens, cache, to_come)

    model.backbone.forward = recording
    generated = torch.as_tensor(generate_sequences(model, 3, seed=1, progress=False, multiplicities=np.array([4])))
    model.backbone.forward = forward
    full = with_condition_tokens(generated, config)  # START M(4) t1 t2 t3 t4 STOP
    assert torch.equal(torch.cat(seen, dim=1), constituents_to_come(full, config)[:, :6])  # all but STOP's
    # a cached step with that to_come gives the hidden state the whole sequence gives
    cache = KVCache(config, len(full), device="cpu")
    with torch.no_grad():
        model.backbone(full[:, :2], cache)
        for t in range(2, 6):
            hidden = model.backbone(full[:, t : t + 1], cache, to_come=constituents_to_come(full[:, : t + 1], config)[:, -1:])
        whole = model.backbone(full[:, :6])
    assert torch.allclose(hidden[:, -1], whole[:, -1], atol=1e-5)


def test_cached_logits_equal_full_recomputation_across_the_cache_growing():
    # A sequence of 100 positions fills the cache's storage and has it grow (32 positions at a time)
    # three times, once within a prefix given at once, and the compaction happens after a growth.
    config = GPTConfig(codebook_size=40, embed_dim=32, n_heads=4, n_blocks=2, ffn_dim=64, max_length=100)
    model = small_gpt(1, config)
    sequences = random_sequences(4, 100, config, seed=1)
    keep = torch.tensor([1, 3])
    with torch.no_grad():
        full = model(sequences)
        cache = KVCache(config, 4, device="cpu")
        steps = [model(sequences[:, :40], cache)]  # grows to 64 at once
        steps += [model(sequences[:, t : t + 1], cache) for t in range(40, 70)]
        assert cache.capacity == 96 and cache.length == 70
        cache.keep(keep)
        rest = [model(sequences[keep, t : t + 1], cache) for t in range(70, 100)]
    assert cache.capacity == 100  # the last growth stops at max_length
    assert torch.allclose(torch.cat(steps, dim=1), full[:, :70], atol=1e-5, rtol=0)
    assert torch.allclose(torch.cat(rest, dim=1), full[keep, 70:], atol=1e-5, rtol=0)
