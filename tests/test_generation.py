"""Generation: sampling draws the right distribution, sequences stop and pad, seeds reproduce, jets decode."""

import numpy as np
import pytest
import torch

from omnijet_lib.data.jet_files import read_jets, write_jets
from omnijet_lib.data.jets import UNLABELLED
from omnijet_lib.generation import decode_generated_jets, generate_batch, generate_sequences
from omnijet_lib.generation import tokens as generation
from omnijet_lib.models.gpt import GPT, GPTConfig
from omnijet_lib.models.sampling import sample_from_head, sample_tokens
from omnijet_lib.tokenizers.binned import BinnedConfig, BinnedTokenizer
from omnijet_lib.tokenizers.tokens import PAD, START

CONFIG = GPTConfig(codebook_size=27, embed_dim=32, n_heads=4, n_blocks=2, ffn_dim=64, max_length=20)


def model_with_stop_bias(stop_bias: float, seed: int = 0) -> GPT:
    """A random small GPT whose STOP logit is shifted: large -> stops at once, -inf -> never stops."""
    torch.manual_seed(seed)
    model = GPT(CONFIG).eval()
    with torch.no_grad():
        model.head.linear.bias[CONFIG.stop_token] += stop_bias
    return model


def check_structure(sequences: np.ndarray, stop: int) -> np.ndarray:
    """START, then tokens, then at most one STOP, then only PAD; returns the number of drawn tokens."""
    assert (sequences[:, 0] == START).all()
    body = sequences[:, 1:]
    assert not (body == START).any(), "START is never sampled"
    drawn = (body != PAD).sum(axis=1)
    for row, n in zip(body, drawn):
        assert (row[:n] != PAD).all() and (row[n:] == PAD).all(), "PAD only after the end"
        stops = np.flatnonzero(row == stop)
        assert stops.size <= 1 and (stops.size == 0 or stops[0] == n - 1), "a STOP ends the sequence"
    return drawn


def test_sampling_follows_the_softmax_and_never_draws_start():
    logits = torch.tensor([[5.0, 0.3, 1.2, -0.5, 0.8, 0.0]])  # START would dominate if it could be drawn
    draws = sample_tokens(logits.repeat(100_000, 1), generator=torch.Generator().manual_seed(0))
    expected = torch.softmax(logits[0, 1:], dim=0)
    observed = torch.bincount(draws, minlength=6).float() / len(draws)
    assert observed[0] == 0
    assert torch.allclose(observed[1:], expected, atol=0.005)
    assert torch.equal(logits, torch.tensor([[5.0, 0.3, 1.2, -0.5, 0.8, 0.0]])), "the caller's logits are untouched"


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampling_from_the_output_layer_in_blocks_follows_the_softmax(temperature):
    # 300 classes in blocks of 64 (the last one short), the last 20 left out and three banned, one at a
    # block's edge: each class is drawn as often as the softmax of the whole layer says.
    torch.manual_seed(0)
    weight, bias, hidden = torch.randn(320, 8), torch.randn(320), torch.randn(1, 8)
    banned = (0, 63, 64)
    draws = sample_from_head(
        hidden.repeat(400_000, 1), weight, bias, n_classes=300, banned=banned, temperature=temperature,
        generator=torch.Generator().manual_seed(0), chunk=64,
    )  # fmt: skip
    logits = (hidden @ weight.T + bias)[0, :300] / temperature
    logits[list(banned)] = -torch.inf
    expected = torch.softmax(logits, dim=0)
    observed = torch.bincount(draws, minlength=300).float() / len(draws)
    assert len(observed) == 300 and observed[list(banned)].sum() == 0
    sigma = (expected * (1 - expected) / len(draws)).sqrt()
    assert ((observed - expected).abs() <= 5 * sigma + 1e-6).all()


def test_sampling_from_the_output_layer_in_bfloat16_is_close_to_float32():
    torch.manual_seed(1)
    weight, hidden = torch.randn(300, 16), torch.randn(1, 16)
    n = 200_000
    draws = {
        dtype: sample_from_head(hidden.repeat(n, 1), weight.to(dtype), None, generator=torch.Generator().manual_seed(0))
        for dtype in (torch.float32, torch.bfloat16)
    }
    p32, p16 = (torch.bincount(d, minlength=300).float() / n for d in draws.values())
    assert 0.5 * (p32 - p16).abs().sum() < 0.05  # total variation: a rounding of the logits, not another law


def test_top_k_and_temperature():
    logits = torch.tensor([[0.0, 3.0, 2.0, 1.0, 0.5]]).repeat(20_000, 1)
    g = torch.Generator().manual_seed(1)
    assert set(sample_tokens(logits, top_k=2, generator=g).tolist()) == {1, 2}
    assert set(sample_tokens(logits, top_k=1, generator=g).tolist()) == {1}
    cold = sample_tokens(logits, temperature=0.05, generator=g)
    assert (cold == 1).float().mean() > 0.999
    with pytest.raises(ValueError, match="temperature"):
        sample_tokens(logits, temperature=0)
    with pytest.raises(ValueError, match="top_k"):
        sample_tokens(logits, top_k=5)


def test_a_sure_stop_ends_every_sequence_at_once():
    sequences = generate_sequences(model_with_stop_bias(100.0), 7, batch_size=3, progress=False)
    assert sequences.shape == (7, CONFIG.max_length)
    assert (sequences[:, 1] == CONFIG.stop_token).all() and (sequences[:, 2:] == PAD).all()


def test_without_stop_sequences_fill_up_and_end_in_stop():
    # as a jet truncated to 128 constituents ends in the token files: 128 tokens, then STOP
    sequences = generate_sequences(model_with_stop_bias(-torch.inf), 5, max_length=12, progress=False)
    assert sequences.shape == (5, 12)
    assert (check_structure(sequences, CONFIG.stop_token) == 11).all()
    assert (sequences[:, -1] == CONFIG.stop_token).all() and not (sequences[:, 1:-1] == CONFIG.stop_token).any()
    jets, kept = decode_generated_jets(
        generate_sequences(model_with_stop_bias(-torch.inf), 3, progress=False), binned()
    )
    assert (jets.n_constituents == CONFIG.max_length - 2).all()


def test_sequences_stop_at_different_lengths_and_pad():
    sequences = generate_sequences(model_with_stop_bias(2.5), 64, batch_size=16, progress=False)
    drawn = check_structure(sequences, CONFIG.stop_token)
    assert len(set(drawn.tolist())) > 5, "lengths vary, so rows leave the batch at different steps"


def test_same_seed_same_sequences():
    model = model_with_stop_bias(2.0)
    a = generate_sequences(model, 20, batch_size=8, seed=3, progress=False)
    b = generate_sequences(model, 20, batch_size=8, seed=3, progress=False)
    c = generate_sequences(model, 20, batch_size=8, seed=4, progress=False)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def greedy_without_cache(model: GPT, max_length: int) -> list[int]:
    """The reference: recompute the whole sequence each step and take the most likely token."""
    sequence = [START]
    with torch.no_grad():
        while len(sequence) < max_length:
            logits = model(torch.tensor([sequence]))[0, -1]
            logits[START] = -torch.inf
            sequence.append(int(logits.argmax()))
            if sequence[-1] == CONFIG.stop_token:
                break
    return sequence


def test_cached_generation_equals_recomputation():
    # top_k=1 makes sampling greedy, so cached generation must reproduce token for
    # token what full recomputation of the sequence at every step gives.
    lengths = []
    for seed in range(12):
        model = model_with_stop_bias(1.5, seed=seed)
        batch = generate_batch(model, 2, top_k=1).numpy()
        expected = greedy_without_cache(model, CONFIG.max_length)
        for row in batch:  # greedy from START: every row is the same sequence
            assert row[: len(expected)].tolist() == expected
            assert (row[len(expected) :] == PAD).all()
        lengths.append(len(expected))
    assert len(set(lengths)) > 2


def test_generation_in_bfloat16_makes_valid_sequences_and_refuses_an_unknown_precision():
    model = model_with_stop_bias(1.0)
    sequences = generate_batch(model, 16, generator=torch.Generator().manual_seed(0), precision="bf16").numpy()
    assert len(set(check_structure(sequences, CONFIG.stop_token).tolist())) > 2
    with pytest.raises(ValueError, match="precision must be one of"):
        generate_batch(model, 2, precision="fp8")


@pytest.mark.parametrize("fraction", [1e-9, 2.0])  # compact at every stop / never
def test_dropping_finished_rows_changes_no_sequence(monkeypatch, fraction):
    # Each step draws one number per unfinished row whether or not the cache is
    # compacted, so the same seed must give the same sequences either way.
    model = model_with_stop_bias(2.5)
    default = generate_batch(model, 32, generator=torch.Generator().manual_seed(5))
    monkeypatch.setattr(generation, "COMPACT_FRACTION", fraction)
    other = generate_batch(model, 32, generator=torch.Generator().manual_seed(5))
    assert torch.equal(default, other)
    assert len(set(((default != PAD).sum(dim=1)).tolist())) > 5


def binned() -> BinnedTokenizer:
    """27 codes: for decoding, any tokenizer does."""
    return BinnedTokenizer(BinnedConfig(bins=(3, 3, 3), low=(-1.0, -2.0, -2.0), high=(4.0, 2.0, 2.0)))


def test_generated_jets_decode_and_are_written_in_the_jet_schema(tmp_path):
    tokenizer = binned()
    assert tokenizer.codebook_size == 27
    stop = 28
    sequences = np.array(
        [
            [START, 5, 27, 1, stop, PAD],
            [START, stop, PAD, PAD, PAD, PAD],  # empty: no jet
            [START, 14, 14, 3, 9, 2],  # reached the length limit
        ]
    )
    jets, kept = decode_generated_jets(sequences, tokenizer)
    assert kept.tolist() == [0, 2]
    assert jets.n_constituents.tolist() == [3, 5]
    assert (jets.label == UNLABELLED).all()
    pts = [np.asarray(c) for c in jets.constituents.pt]
    assert all((np.diff(pt) <= 0).all() for pt in pts), "pT-ordered like real jets"
    path = write_jets(tmp_path / "generated.h5", jets)
    back = read_jets(path)
    assert np.allclose(back.mass, jets.mass) and back.n_constituents.tolist() == [3, 5]


def test_stop_probability_by_length_averages_the_model_over_the_prefixes_that_exist():
    from omnijet_lib.generation import stop_probability_by_length

    model = model_with_stop_bias(0.0)
    stop = CONFIG.stop_token
    # two sequences: 5 tokens then STOP, 2 tokens and cut (no STOP), padded
    sequences = np.full((2, 10), PAD)
    sequences[0, :7] = [START, 3, 4, 5, 6, 7, stop]
    sequences[1, :3] = [START, 9, 10]
    probability, count = stop_probability_by_length(model, sequences, batch_size=1)
    assert count.tolist() == [2, 2, 2, 1, 1, 1]  # prefixes of 0..5 tokens
    with torch.no_grad():
        direct = [
            torch.softmax(model(torch.as_tensor(s[None, : n + 1])), -1)[0, :, stop]
            for s, n in ((sequences[0], 5), (sequences[1], 2))
        ]
    expected = [(direct[0][t] + direct[1][t]) / 2 if t <= 2 else direct[0][t] for t in range(6)]
    assert probability == pytest.approx([float(e) for e in expected], rel=1e-5)
    # batching changes nothing; a model that wants to stop says so everywhere
    assert stop_probability_by_length(model, sequences, batch_size=2)[0] == pytest.approx(probability, rel=1e-5)
    assert stop_probability_by_length(model_with_stop_bias(30.0), sequences)[0] == pytest.approx(1.0, abs=1e-6)


MULTIPLICITY_CONFIG = GPTConfig(**{**CONFIG.__dict__, "multiplicity_token": True})


def multiplicity_first_model(multiplicity_logits: torch.Tensor, seed: int = 0) -> GPT:
    """A random small GPT that draws the multiplicity first, with the given logits for M(0) .. M(max_length - 2)."""
    torch.manual_seed(seed)
    model = GPT(MULTIPLICITY_CONFIG).eval()
    first = MULTIPLICITY_CONFIG.first_multiplicity_token
    with torch.no_grad():
        model.head.linear.weight[first:] = 0  # the multiplicity logits are the bias alone
        model.head.linear.bias[first:] = multiplicity_logits
    return model


@pytest.mark.parametrize("fraction", [1e-9, 2.0])  # compact at every stop / never
def test_a_multiplicity_first_model_makes_exactly_the_multiplicity_it_draws(monkeypatch, fraction):
    monkeypatch.setattr(generation, "COMPACT_FRACTION", fraction)
    n_values = MULTIPLICITY_CONFIG.max_length - 1  # multiplicities 0 .. 18
    logits = torch.full((n_values,), -torch.inf)
    logits[[3, 7, 18]] = torch.tensor([0.0, 1.0, -1.0])
    model = multiplicity_first_model(logits)
    with torch.no_grad():
        model.head.linear.bias[MULTIPLICITY_CONFIG.stop_token] += 50.0  # STOP would win every draw, were it allowed
    sequences = generate_sequences(model, 3000, batch_size=500, seed=3, progress=False)
    assert sequences.shape == (3000, MULTIPLICITY_CONFIG.max_length)  # a token file's layout: no multiplicity token
    drawn = check_structure(sequences, MULTIPLICITY_CONFIG.stop_token)
    n = drawn - 1  # constituents before STOP (every row has one: 18 constituents fill the sequence)
    assert set(np.unique(n)) == {3, 7, 18}
    assert (sequences[:, 1:][sequences[:, 1:] != PAD] <= MULTIPLICITY_CONFIG.stop_token).all()
    expected = torch.softmax(logits[[3, 7, 18]], dim=0).numpy()
    observed = np.array([(n == k).mean() for k in (3, 7, 18)])
    assert np.allclose(observed, expected, atol=0.03)


def test_the_multiplicity_is_inserted_for_training_and_left_out_of_the_stop_hazard():
    from omnijet_lib.generation import stop_probability_by_length
    from omnijet_lib.models.gpt import with_condition_tokens

    stop = CONFIG.stop_token
    sequences = torch.tensor([[START, 5, 9, stop, PAD], [START, 4, stop, PAD, PAD]])
    first = MULTIPLICITY_CONFIG.first_multiplicity_token
    expected = torch.tensor([[START, first + 2, 5, 9, stop, PAD], [START, first + 1, 4, stop, PAD, PAD]])
    assert torch.equal(with_condition_tokens(sequences, MULTIPLICITY_CONFIG), expected)
    assert torch.equal(with_condition_tokens(sequences, CONFIG), sequences)  # the paper's model: unchanged
    with pytest.raises(ValueError, match="multiplicity first"):
        stop_probability_by_length(GPT(MULTIPLICITY_CONFIG), sequences.numpy())


def test_multiplicities_given_are_drawn_from_uniformly_and_checked():
    logits = torch.zeros(MULTIPLICITY_CONFIG.max_length - 1)  # the model's own P(n) would be uniform
    model = multiplicity_first_model(logits)
    pool = np.array([2, 2, 2, 9])  # n = 2 three times as often as n = 9
    sequences = generate_sequences(model, 2000, batch_size=400, seed=1, progress=False, multiplicities=pool)
    n = check_structure(sequences, MULTIPLICITY_CONFIG.stop_token) - 1
    assert set(np.unique(n)) == {2, 9}
    assert abs((n == 2).mean() - 0.75) < 0.03
    with pytest.raises(ValueError, match="do not fit"):
        generate_sequences(model, 5, multiplicities=np.array([3, 19]), progress=False)  # 18 constituents at most
    with pytest.raises(ValueError, match="multiplicity_token"):
        generate_sequences(model_with_stop_bias(0.0), 5, multiplicities=pool, progress=False)


def test_a_stop_drawing_gpt_with_a_jet_pt_token_never_draws_a_condition_token():
    """Without the multiplicity token, STOP stays possible, but M(n) and P(b) never stand for a constituent."""
    config = GPTConfig(codebook_size=6, embed_dim=16, n_heads=2, n_blocks=1, ffn_dim=32, max_length=12,
                       jet_pt_edges=(600.0,))  # fmt: skip
    torch.manual_seed(0)
    model = GPT(config).eval()
    with torch.no_grad():
        model.head.linear.bias[config.first_jet_pt_token :] += 20.0  # the pT tokens would win every draw
    sequences = generate_sequences(model, 200, seed=0, progress=False, jet_pt=np.full(200, 550.0))
    drawn = sequences[:, 1:][sequences[:, 1:] != PAD]
    assert drawn.max() <= config.stop_token


# torch.compile's own imports touch torch.jit (torch's warning, not ours)
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_generation_steps_draw_what_eager_ones_draw():
    """torch.compile of the decoding step (jets: the backbone; showers: the blocks) changes no draw of a small
    model: the sequences shrink and the cache grows under one dynamic-shape compile."""
    from omnijet_lib.generation.hits import generate_hits
    from omnijet_lib.models.spatial_gpt import SpatialGPT, SpatialGPTConfig

    model = model_with_stop_bias(1.0)
    eager = generate_batch(model, 24, generator=torch.Generator().manual_seed(0))
    compiled = generate_batch(model, 24, generator=torch.Generator().manual_seed(0), compile=True)
    assert len(set(check_structure(eager.numpy(), CONFIG.stop_token).tolist())) > 2  # rows leave at many steps
    assert torch.equal(eager, compiled)

    torch.manual_seed(0)
    showers = SpatialGPT(SpatialGPTConfig(embed_dim=16, n_heads=2, n_blocks=1, ffn_dim=32, n_components=3)).eval()
    options = {"max_hits": 40}
    eager = generate_hits(showers, [20.0, 50.0, 90.0], generator=torch.Generator().manual_seed(1), **options)
    compiled = generate_hits(
        showers, [20.0, 50.0, 90.0], generator=torch.Generator().manual_seed(1), compile=True, **options
    )
    assert np.array_equal(eager.mask, compiled.mask) and np.array_equal(eager.voxels, compiled.voxels)
    np.testing.assert_allclose(eager.log_energy, compiled.log_energy, atol=1e-4)
