"""The vector quantizer: exact nearest-code search, masking, gradients, k-means, dead codes, state."""

from __future__ import annotations

import pytest
import torch

from omnijet_lib.tokenizers.quantizer import QuantizerConfig, VectorQuantizer, _argmin_rows, nearest_code


def small_config(**overrides) -> QuantizerConfig:
    defaults = dict(codebook_size=32, code_dim=4, kmeans_init=False, replace_every=0)
    return QuantizerConfig(**(defaults | overrides))


def clustered(n: int, n_clusters: int, dim: int = 4, *, spread: float = 3.0, width: float = 0.05, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = spread * torch.randn(n_clusters, dim, generator=g)
    return centres[torch.randint(n_clusters, (n,), generator=g)] + width * torch.randn(n, dim, generator=g)


# --- nearest_code ---


@pytest.mark.parametrize("block", [1, 7, 40, 41, 100, 2**24])  # below, at and above K; N = 257 is no multiple
def test_nearest_code_matches_brute_force(block):
    g = torch.Generator().manual_seed(1)
    x, codebook = (
        torch.randn(257, 4, generator=g, dtype=torch.float64),
        torch.randn(41, 4, generator=g, dtype=torch.float64),
    )
    indices, distances = nearest_code(x, codebook, max_block_elements=block)
    brute = torch.cdist(x, codebook)
    assert indices.dtype == torch.long and indices.shape == (257,)
    assert torch.equal(indices, brute.argmin(1))
    torch.testing.assert_close(distances, brute.min(1).values.pow(2))


def test_nearest_code_float32_finds_a_nearest_code():
    # In float32 near-ties may resolve differently from cdist; the distance reached must be the minimum.
    x, codebook = torch.randn(3000, 4), torch.randn(500, 4)
    indices, distances = nearest_code(x, codebook, max_block_elements=1000)
    brute = torch.cdist(x.double(), codebook.double()).pow(2)
    torch.testing.assert_close(distances.double(), brute.min(1).values, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(brute.gather(1, indices[:, None]).squeeze(1), brute.min(1).values, atol=1e-5, rtol=1e-5)


def test_nearest_code_matches_vector_quantize_pytorch():
    from vector_quantize_pytorch import VectorQuantize

    torch.manual_seed(2)
    x, codebook = torch.randn(1000, 4, dtype=torch.float64), torch.randn(128, 4, dtype=torch.float64)
    oracle = VectorQuantize(dim=4, codebook_size=128).double().eval()
    with torch.no_grad():
        oracle.codebook = codebook
        _, oracle_indices, _ = oracle(x[None])  # (1, N)
    indices, _ = nearest_code(x, codebook, max_block_elements=1000)
    assert torch.equal(indices, oracle_indices[0])


def test_nearest_code_does_not_depend_on_the_batch():
    """A vector's code is the same searched alone, among others or in another order, to the last bit.

    Vectors midway between two codes are ties in exact arithmetic: float rounding decides, so a
    search that rounds differently for some batch shapes (MKL's kernel for fewer than 4 rows
    does) picks the other code for many of them (68 of 300 before it had MIN_ROWS).  Checked on one
    thread: with several, MKL may split a block's rows among threads and round such an exact tie
    either way (seen with 2 threads: 1 of 5 rows), which no batching on our side can prevent.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_codes_do_not_depend_on_the_batch()
    finally:
        torch.set_num_threads(threads)


def _check_codes_do_not_depend_on_the_batch():
    g = torch.Generator().manual_seed(7)
    codebook = torch.randn(8192, 4, generator=g)
    near = torch.cdist(codebook[:300], codebook).fill_diagonal_(float("inf")).argmin(1)  # each one's nearest other code
    x = torch.cat([(codebook[:300] + codebook[near]) / 2, torch.randn(2000, 4, generator=g)])
    plain = torch.addmm(codebook.pow(2).sum(1), x, codebook.T, alpha=-2).argmin(1)  # one product, one argmin
    assert torch.equal(nearest_code(x, codebook)[0], plain)
    order = torch.randperm(len(x), generator=g)
    assert torch.equal(nearest_code(x[order], codebook)[0], plain[order])
    alone = torch.cat([nearest_code(x[i : i + 1], codebook)[0] for i in range(300)])
    assert torch.equal(alone, plain[:300])
    for n in (2, 3, 5, 37):
        assert torch.equal(nearest_code(x[:n], codebook)[0], plain[:n])


@pytest.mark.parametrize("k", [4096, 1000])  # groups of the two-step argmin, and none (K no multiple of them)
def test_nearest_code_ties_go_to_the_lower_index(k):
    g = torch.Generator().manual_seed(8)
    codes = torch.randn(k, 4, generator=g)
    x = torch.randn(500, 4, generator=g)
    indices, _ = nearest_code(x, torch.cat([codes, codes]))  # every nearest code is there twice
    assert torch.equal(indices, nearest_code(x, codes)[0])  # the first copy wins
    few_values = torch.randint(50, (64, 2 * k), generator=g).float()  # many exact ties
    assert torch.equal(_argmin_rows(few_values), few_values.argmin(1))


def test_nearest_code_rejects_bad_shapes():
    with pytest.raises(ValueError, match="codebook"):
        nearest_code(torch.randn(5, 4), torch.randn(8, 3))
    with pytest.raises(ValueError, match="max_block_elements"):
        nearest_code(torch.randn(5, 4), torch.randn(8, 4), max_block_elements=0)


# --- VectorQuantizer ---


def test_masked_positions_are_padding():
    torch.manual_seed(3)
    vq = VectorQuantizer(small_config()).train()
    z = torch.randn(6, 10, 4)
    mask = torch.rand(6, 10) < 0.6
    out = vq(z, mask)
    assert out.quantized.shape == z.shape and out.codes.shape == mask.shape
    assert torch.all(out.codes[~mask] == -1) and torch.all(out.codes[mask] >= 0)
    assert torch.all(out.quantized[~mask] == 0)
    torch.testing.assert_close(out.quantized[mask], vq.lookup(out.codes[mask]))
    other = vq(torch.where(mask[..., None], z, 1e3 * torch.randn_like(z)), mask)
    assert torch.equal(other.commit_loss, out.commit_loss)
    assert torch.equal(other.codes, out.codes)


def test_straight_through_and_sync_gradients():
    torch.manual_seed(4)
    vq = VectorQuantizer(small_config(sync_nu=1.0))
    z = torch.randn(5, 7, 4, requires_grad=True)
    mask = torch.rand(5, 7) < 0.7
    vq(z, mask).quantized.sum().backward()
    assert torch.equal(z.grad, mask[..., None].expand_as(z).float())  # identity where real, 0 at padding
    assert vq.raw_codebook.grad.abs().sum() > 0  # synchronised update reaches the codebook

    vq = VectorQuantizer(small_config(sync_nu=0.0))
    vq(z, mask).quantized.sum().backward()
    assert vq.raw_codebook.grad is None or torch.all(vq.raw_codebook.grad == 0)


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_beta_splits_the_commitment_loss(beta):
    torch.manual_seed(5)
    vq = VectorQuantizer(small_config(beta=beta))
    z = torch.randn(50, 4, requires_grad=True)
    loss = vq(z).commit_loss
    assert loss > 0
    loss.backward()
    z_moved = z.grad is not None and z.grad.abs().sum() > 0
    codebook_moved = vq.raw_codebook.grad is not None and vq.raw_codebook.grad.abs().sum() > 0
    assert (z_moved, codebook_moved) == (beta == 0.0, beta == 1.0)
    assert (vq.affine_scale.grad.abs().sum() > 0) == (beta == 1.0)  # the affine is part of the codebook


def test_commit_loss_value():
    vq = VectorQuantizer(small_config(beta=0.3))
    z = torch.randn(40, 4)
    out = vq(z)
    expected = (z - vq.lookup(out.codes)).pow(2).mean()  # both terms have this value; weights sum to 1
    torch.testing.assert_close(out.commit_loss, expected)


def test_kmeans_init_lowers_quantisation_error_and_runs_once():
    torch.manual_seed(6)
    data = clustered(2000, 8)
    error = {}
    for kmeans in (False, True):
        vq = VectorQuantizer(small_config(codebook_size=16, kmeans_init=kmeans)).train()
        vq(data)
        error[kmeans] = nearest_code(data, vq.codebook().detach())[1].mean()
    assert error[True] < 0.1 * error[False]
    assert bool(vq.initialised)

    before = vq.codebook().detach().clone()
    vq(data + 100.0)  # a second training batch must not re-initialise
    assert torch.equal(vq.codebook().detach(), before)

    resumed = VectorQuantizer(vq.config).train()
    resumed.load_state_dict(vq.state_dict())
    resumed(data + 100.0)
    assert torch.equal(resumed.codebook().detach(), before)


def test_kmeans_init_with_fewer_vectors_than_codes_gives_distinct_codes():
    torch.manual_seed(7)
    vq = VectorQuantizer(small_config(codebook_size=64, kmeans_init=True)).train()
    vq(torch.randn(10, 4))
    assert len(torch.unique(vq.codebook().detach(), dim=0)) == 64


def test_eval_forward_does_not_initialise():
    vq = VectorQuantizer(small_config(kmeans_init=True)).eval()
    before = vq.codebook().detach().clone()
    vq(torch.randn(100, 4))
    assert not bool(vq.initialised) and torch.equal(vq.codebook().detach(), before)


def test_dead_codes_move_onto_data():
    torch.manual_seed(8)
    vq = VectorQuantizer(small_config(codebook_size=64, replace_every=2)).train()
    with torch.no_grad():  # a non-trivial affine: replacement must invert it
        vq.affine_scale.fill_(-0.2)
        vq.affine_shift.fill_(0.3)
    data = clustered(500, 20, seed=1) + 20.0  # far from the N(0, 1) codes: only a few get used
    first, second = vq(data).codes, vq(data).codes
    used = torch.cat([first, second]).unique()
    third = vq(data).codes  # batches_seen = 2: dead codes are replaced before this batch is quantised
    dead = torch.tensor([k for k in range(64) if k not in set(used.tolist())])
    assert len(dead) > 50
    assert torch.cdist(vq.lookup(dead), data).min(1).values.max() < 0.05
    assert vq.utilisation(second) < 0.2 < 0.5 < vq.utilisation(third)


def test_no_replacement_when_switched_off_or_in_eval():
    vq = VectorQuantizer(small_config(replace_every=0)).train()
    before = vq.codebook().detach().clone()
    for _ in range(5):
        vq(torch.randn(50, 4) + 20.0)
    assert torch.equal(vq.codebook().detach(), before)
    vq = VectorQuantizer(small_config(replace_every=1)).eval()
    before = vq.codebook().detach().clone()
    for _ in range(5):
        vq(torch.randn(50, 4) + 20.0)
    assert torch.equal(vq.codebook().detach(), before)
    assert vq.unused_for.sum() == 0 and vq.batches_seen == 0


def test_state_dict_round_trip_reproduces_training():
    torch.manual_seed(9)
    config = small_config(kmeans_init=True, replace_every=2)
    vq = VectorQuantizer(config).train()
    optimizer = torch.optim.Adam(vq.parameters(), lr=1e-2)
    data = clustered(300, 6, seed=2)
    for _ in range(3):
        optimizer.zero_grad()
        out = vq(data + 0.1 * torch.randn_like(data))
        (out.commit_loss + out.quantized.pow(2).mean()).backward()
        optimizer.step()
    copy = VectorQuantizer(config)
    copy.load_state_dict(vq.state_dict())
    for mode in ("eval", "train"):  # train: the next batch replaces dead codes, from the same RNG state
        getattr(vq, mode)(), getattr(copy, mode)()
        state = torch.get_rng_state()
        a = vq(data)
        torch.set_rng_state(state)
        b = copy(data)
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    for (name, x), (_, y) in zip(vq.state_dict().items(), copy.state_dict().items()):
        assert torch.equal(x, y), name


def test_affine_off_has_no_affine_parameters():
    vq = VectorQuantizer(small_config(affine_lr=0.0))
    assert [name for name, _ in vq.named_parameters()] == ["raw_codebook"]
    assert vq.codebook() is vq.raw_codebook


def test_lookup_and_utilisation():
    vq = VectorQuantizer(small_config(codebook_size=8))
    codes = torch.tensor([[0, 3, 3, -1], [7, -1, -1, -1]])
    vectors = vq.lookup(codes)
    assert vectors.shape == (2, 4, 4) and torch.all(vectors[codes < 0] == 0)
    torch.testing.assert_close(vectors[0, 1], vq.codebook()[3].detach())
    assert vq.utilisation(codes) == 3 / 8
    with pytest.raises(ValueError, match="codes"):
        vq.lookup(torch.tensor([8]))


def test_bad_input_shapes():
    vq = VectorQuantizer(small_config())
    with pytest.raises(ValueError, match="code_dim"):
        vq(torch.randn(3, 5))
    with pytest.raises(ValueError, match="mask"):
        vq(torch.randn(3, 7, 4), torch.ones(3, 6, dtype=torch.bool))


@pytest.mark.parametrize(
    ("field", "value"),
    [("codebook_size", 0), ("code_dim", 0), ("beta", -0.1), ("beta", 1.5), ("replace_every", -1), ("affine_lr", -1.0)],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        QuantizerConfig(**{field: value})
