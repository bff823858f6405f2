"""Tokenizers: token conventions, binned round trips, VQ-VAE shapes and training, save/load, token files."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from conftest import make_jets

from omnijet_lib.data.jet_files import write_jets
from omnijet_lib.data.jets import concatenate
from omnijet_lib.data.preprocessing import PreprocessingConfig, preprocess
from omnijet_lib.errors import BadDataError
from omnijet_lib.tokenizers import (
    PAD,
    START,
    BinnedConfig,
    BinnedTokenizer,
    QuantizerConfig,
    VQVAEConfig,
    VQVAETokenizer,
    load_tokenizer,
    stop_token,
)
from omnijet_lib.tokenizers.specs import build_tokenizer, parse_spec
from omnijet_lib.tokenizers.token_files import read_token_file, tokenize_file, write_token_file
from omnijet_lib.tokenizers.tokens import codes_to_tokens, from_sequences, to_sequences
from omnijet_lib.training import TrainingConfig
from omnijet_lib.training.tokenizers import fit_vqvae

SMALL_VQ = VQVAEConfig(hidden_dim=32, n_heads=4, n_layers=2, quantizer=QuantizerConfig(codebook_size=64))


@pytest.fixture(scope="module")
def real(pythia_jets):
    """Pre-processed real top + QCD jets, split 80/20."""
    pre = preprocess(concatenate([pythia_jets["top"], pythia_jets["qcd"]]))
    order = np.random.default_rng(0).permutation(len(pre))
    n_train = int(0.8 * len(order))
    return (pre.features[order[:n_train]], pre.mask[order[:n_train]]), (
        pre.features[order[n_train:]],
        pre.mask[order[n_train:]],
    )


def assert_valid_tokens(tokens, mask, codebook_size):
    assert tokens.shape == mask.shape
    assert np.all(tokens[~mask] == PAD)
    assert tokens[mask].min() >= 1 and tokens[mask].max() <= codebook_size


# --- token conventions ---------------------------------------------------


def test_sequences_round_trip():
    mask = np.array([[True, True, False], [True, False, False], [True, True, True]])
    tokens = np.where(mask, [[5, 1, 0], [9, 0, 0], [2, 3, 4]], PAD)
    seq = to_sequences(tokens, mask, codebook_size=9)
    assert seq[0].tolist() == [START, 5, 1, stop_token(9), PAD]
    assert seq[2].tolist() == [START, 2, 3, 4, stop_token(9)]
    back, back_mask = from_sequences(seq, 9, max_length=3)
    np.testing.assert_array_equal(back, tokens)
    np.testing.assert_array_equal(back_mask, mask)


def test_sequence_without_stop_and_bad_sequences():
    tokens, mask = from_sequences(np.array([[START, 3, 4, 5]]), 9, max_length=3)  # ran to the length limit
    assert tokens.tolist() == [[3, 4, 5]] and mask.all()
    with pytest.raises(ValueError, match="more than max_length"):
        from_sequences(np.array([[START, 3, 4, 5]]), 9, max_length=2)
    with pytest.raises(ValueError, match="1..9"):
        from_sequences(np.array([[START, 3, START, 5]]), 9, max_length=3)  # START inside a sequence
    with pytest.raises(ValueError, match="begin with the START"):
        from_sequences(np.array([[3, 4]]), 9, max_length=3)


# --- binned ----------------------------------------------------------------


def test_binned_round_trip(real):
    (features, mask), _ = real
    tok = BinnedTokenizer(BinnedConfig(bins=(21, 21, 21))).fit(features, mask)
    assert tok.codebook_size == 21**3
    tokens = tok.encode(features, mask)
    assert_valid_tokens(tokens, mask, tok.codebook_size)
    decoded = tok.decode(tokens, mask)
    width = (np.asarray(tok.config.high) - np.asarray(tok.config.low)) / 21
    low, high = np.asarray(tok.config.low), np.asarray(tok.config.high)
    inside = np.all((features[mask] >= low) & (features[mask] <= high), axis=1)
    assert inside.mean() > 0.99  # the grid spans the 0.1-99.9% quantiles of each feature
    assert np.all(np.abs(decoded[mask][inside] - features[mask][inside]) <= width / 2 + 1e-5)  # within half a bin
    outside = features[mask][~inside]  # beyond the grid: in the edge bin
    assert np.all((decoded[mask][~inside] >= low) & (decoded[mask][~inside] <= high)) and len(outside) > 0
    assert np.all(decoded[~mask] == 0)
    np.testing.assert_array_equal(tok.encode(decoded, mask), tokens)  # cell centres encode to themselves


def test_binned_errors():
    with pytest.raises(ValueError, match="bins must be 3"):
        BinnedConfig(bins=(10, 10))
    with pytest.raises(RuntimeError, match="call fit"):
        BinnedTokenizer().encode(np.zeros((1, 2, 3)), np.ones((1, 2), bool))
    tok = BinnedTokenizer(BinnedConfig((4, 4, 4), (-1, -1, -1), (1, 1, 1)))
    with pytest.raises(ValueError, match="NaN"):
        tok.encode(np.full((1, 2, 3), np.nan), np.ones((1, 2), bool))
    with pytest.raises(ValueError, match="1..64"):
        tok.decode(np.array([[65]]), np.array([[True]]))


# --- VQ-VAE ----------------------------------------------------------------


@pytest.mark.parametrize("conditional", [True, False])
def test_vqvae_shapes_ranges_and_padding(real, conditional):
    (features, mask), _ = real
    torch.manual_seed(0)
    tok = VQVAETokenizer(dataclasses.replace(SMALL_VQ, conditional=conditional), device="cpu")
    tokens = tok.encode(features[:20], mask[:20])
    assert_valid_tokens(tokens, mask[:20], 64)
    decoded = tok.decode(tokens, mask[:20])
    assert decoded.shape == features[:20].shape and np.all(decoded[~mask[:20]] == 0)
    noisy = features[:20].copy()
    noisy[~mask[:20]] = 7.0  # whatever sits in the padding must not matter
    np.testing.assert_array_equal(tok.encode(noisy, mask[:20]), tokens)


@pytest.mark.parametrize("kind", ["conditional", "unconditional"])
def test_vqvae_encode_and_decode_are_those_of_one_plain_batch_to_the_last_bit(real, kind):
    """encode / decode sort jets by length and cut each batch short: nothing may change.

    The reference is all jets in one batch, in their order, padded to 128 (what the
    tokenizer computed before).  Codes alone could hide a difference in the last bit (it
    changes a code only at a near-tie), so the latents and the decoded features are compared too.
    """
    features, mask = (np.concatenate(arrays) for arrays in zip(*real))
    mask[0], mask[1, 3:] = False, False  # a jet without constituents, one of 3
    features[~mask] = 0.0
    tok = build_tokenizer(f"{kind}-8192", vqvae=SMALL_VQ, device="cpu", seed=0)
    tok.batch_size = 7  # many batches of different lengths, the last one short
    model = tok.model.eval()
    x, m = torch.from_numpy(features), torch.from_numpy(mask)
    with torch.no_grad():
        latents, codes = model._run(model.encoder, x, m), model.encode(x, m)
        decoded = model.decode(codes, m)

    tokens = tok.encode(features, mask)
    np.testing.assert_array_equal(tokens, codes_to_tokens(codes.numpy(), mask))
    assert torch.equal(tok.batched(lambda b, bm: model._run(model.encoder, b, bm), x, m, dtype=torch.float32), latents)
    assert np.array_equal(tok.decode(tokens, mask), decoded.numpy())


def reconstruction_mse(tok, features, mask):
    return float(np.mean((tok.reconstruct(features, mask)[mask] - features[mask]) ** 2))


@pytest.mark.slow
def test_trained_vqvae_beats_untrained_and_saves(real, tmp_path):
    train, val = real
    torch.manual_seed(0)
    tok = VQVAETokenizer(SMALL_VQ, device="cpu")
    untrained = reconstruction_mse(tok, *val)
    result = fit_vqvae(
        tok, train, val, TrainingConfig(epochs=4, batch_size=32, seed=3), tmp_path / "run", progress=False
    )
    trained = reconstruction_mse(tok, *val)
    assert trained < 0.2 * untrained, (trained, untrained)
    assert result.history[-1]["codebook_utilisation"] > 0.3

    loaded = load_tokenizer(tok.save(tmp_path / "tok.pt"))
    assert isinstance(loaded, VQVAETokenizer) and loaded.config == tok.config
    np.testing.assert_array_equal(loaded.encode(*val), tok.encode(*val))
    np.testing.assert_array_equal(loaded.reconstruct(*val), tok.reconstruct(*val))


def test_vqvae_fit_resumes_to_the_same_weights(real, tmp_path):
    """One epoch, stop, then a second: the same tokenizer as two epochs in one go."""
    train, val = real
    train = (train[0][:120], train[1][:120])
    config = TrainingConfig(epochs=2, batch_size=32, seed=5)

    def trained(run_dir, epochs_first=None):
        torch.manual_seed(1)
        tok = VQVAETokenizer(SMALL_VQ, device="cpu")
        if epochs_first:
            fit_vqvae(tok, train, val, dataclasses.replace(config, epochs=epochs_first), run_dir, progress=False)
            torch.manual_seed(1)
            tok = VQVAETokenizer(SMALL_VQ, device="cpu")  # a fresh process would start from scratch too
        fit_vqvae(tok, train, val, config, run_dir, progress=False)
        return tok.model.state_dict()

    once, resumed = trained(tmp_path / "a"), trained(tmp_path / "b", epochs_first=1)
    for name in once:
        torch.testing.assert_close(resumed[name], once[name], rtol=0, atol=0, msg=name)


def test_a_seeded_vqvae_starts_from_the_same_weights_whatever_ran_before():
    def weights(seed, draws_before):
        torch.rand(draws_before)  # e.g. another tokenizer built earlier in the same notebook
        return build_tokenizer("conditional-16", vqvae=SMALL_VQ, device="cpu", seed=seed).model.state_dict()

    first, second, other = weights(3, 0), weights(3, 1000), weights(4, 0)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    build_tokenizer("unconditional-16", vqvae=SMALL_VQ, device="cpu", seed=3)
    assert torch.equal(torch.rand(3), expected)  # torch's own RNG is left where it was


def test_save_load_binned_and_bad_files(real, tmp_path):
    (features, mask), _ = real
    tok = build_tokenizer("binned-8").fit(features, mask)
    loaded = load_tokenizer(tok.save(tmp_path / "binned.pt"))
    assert isinstance(loaded, BinnedTokenizer) and loaded.config == tok.config
    np.testing.assert_array_equal(loaded.encode(features, mask), tok.encode(features, mask))
    with pytest.raises(FileNotFoundError, match="tokenizer file not found"):
        load_tokenizer(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an omnijet tokenizer"):
        load_tokenizer(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="not a tokenizer file"):
        load_tokenizer(tmp_path / "text.pt")


def test_specs():
    assert parse_spec("conditional-8192") == ("conditional", 8192)
    tok = build_tokenizer("unconditional-128", device="cpu")
    assert tok.codebook_size == 128 and not tok.config.conditional and tok.config.layers == 3
    assert build_tokenizer("binned-40").codebook_size == 64_000
    for bad in ("conditional", "vq-512", "binned-x", "conditional-0"):
        with pytest.raises(ValueError, match="not understood"):
            parse_spec(bad)


# --- token files -------------------------------------------------------------


def test_tokenize_file(pythia_jets, tmp_path):
    jets = concatenate([pythia_jets["top"][:50], pythia_jets["qcd"][:50]])
    jet_path = write_jets(tmp_path / "jets.h5", jets)
    pre = preprocess(jets)
    tok = BinnedTokenizer(BinnedConfig((10, 10, 10))).fit(pre.features, pre.mask)
    tok_path = tok.save(tmp_path / "tok.pt")
    out = tokenize_file(jet_path, tok_path, tmp_path / "tokens.h5", chunk_size=30, progress=False)

    stored = read_token_file(out)
    assert len(stored) == 100 and stored.codebook_size == 1000
    np.testing.assert_array_equal(stored.label, jets.label)
    np.testing.assert_array_equal(stored.jet_pt, jets.pt.astype(np.float32))  # what a GPT may be conditioned on
    tokens, mask = stored.tokens(max_length=128)
    np.testing.assert_array_equal(mask, pre.mask)
    np.testing.assert_array_equal(tokens, tok.encode(pre.features, pre.mask))
    np.testing.assert_array_equal(stored.lengths, pre.mask.sum(1) + 2)

    with pytest.raises(BadDataError, match="not a token file.*'omnijet-jets'"):
        read_token_file(jet_path)  # a jet file is not a token file, and the error says what it is
    with pytest.raises(FileNotFoundError):
        read_token_file(tmp_path / "nope.h5")
    (tmp_path / "junk.h5").write_text("junk")
    with pytest.raises(BadDataError, match="not an HDF5"):
        read_token_file(tmp_path / "junk.h5")


def test_cli_tokenize(pythia_jets, tmp_path, capsys):
    from omnijet_lib.cli import main

    jets = pythia_jets["top"][:20]
    jet_path = write_jets(tmp_path / "jets.h5", jets)
    pre = preprocess(jets)
    tok_path = BinnedTokenizer(BinnedConfig((5, 5, 5))).fit(pre.features, pre.mask).save(tmp_path / "tok.pt")
    code = main(["tokenize", str(jet_path), "--tokenizer", str(tok_path), "--out", str(tmp_path / "t.h5")])
    assert code == 0 and "20 token sequences" in capsys.readouterr().out
    assert (
        main(["tokenize", str(jet_path), "--tokenizer", str(tmp_path / "none.pt"), "--out", str(tmp_path / "u.h5")])
        == 2
    )
    assert "tokenizer file not found" in capsys.readouterr().err


@pytest.mark.parametrize("chunk_size", [0, -3])
def test_a_bad_chunk_size_is_refused_before_anything_is_written(tmp_path, chunk_size):
    jets = make_jets([5, 8, 3])
    jet_path = write_jets(tmp_path / "jets.h5", jets)
    pre = preprocess(jets)
    tok_path = BinnedTokenizer(BinnedConfig((5, 5, 5))).fit(pre.features, pre.mask).save(tmp_path / "tok.pt")
    out = tmp_path / "tokens" / "t.h5"
    # was: "range() arg 3 must not be zero", UnboundLocalError
    with pytest.raises(ValueError, match=f"chunk_size must be an integer >= 1, got {chunk_size}"):
        tokenize_file(jet_path, tok_path, out, chunk_size=chunk_size, progress=False)
    assert not out.parent.exists()
    # Fewer sequences than announced is an error naming the count, however few (none at all included).
    tok = load_tokenizer(tok_path)
    with pytest.raises(BadDataError, match="expected 3 jets from jets.h5, got 0"):
        write_token_file(out, iter([]), n=3, content="jets", tokenizer=tok, source="jets.h5", progress=False)
    assert not list(out.parent.iterdir())


# --- token space -------------------------------------------------------------


def test_token_blobs_and_fixed_points(real):
    from omnijet_lib.metrics.token_quality import codebook_utilisation, fixed_points, token_blobs

    (features, mask), _ = real
    binned = BinnedTokenizer(BinnedConfig((6, 6, 6))).fit(features, mask)
    tokens = binned.encode(features, mask)
    assert 0 < codebook_utilisation(tokens, mask, 216) <= 1
    points = fixed_points(binned)
    assert all(v.shape == (216,) for v in points.values())
    blobs = token_blobs(binned, [tokens[0, 0]], context_pool=tokens[mask], n_contexts=30, context_size=10)
    assert blobs["eta_rel"].shape == (1, 30) and np.ptp(blobs["eta_rel"]) == 0  # a binned token is a fixed point
    assert blobs["pt"][0, 0] == pytest.approx(points["pt"][tokens[0, 0] - 1])

    torch.manual_seed(0)
    conditional = VQVAETokenizer(SMALL_VQ, device="cpu")
    pool = conditional.encode(features, mask)[mask]
    blobs = token_blobs(conditional, [pool[0]], context_pool=pool, n_contexts=30, context_size=10)
    assert np.ptp(blobs["eta_rel"]) > 0  # the context moves a conditional token
    with pytest.raises(ValueError, match="context_pool is empty"):
        token_blobs(binned, [1], context_pool=np.array([], dtype=int))
    with pytest.raises(ValueError, match="context_size"):
        token_blobs(binned, [1], context_pool=tokens[mask], context_size=500)


def test_mass_error_sources_split_the_mass_error_between_pt_and_angles(pythia_jets):
    from omnijet_lib.data.jets import label_index
    from omnijet_lib.metrics.token_quality import mass_error_sources, token_residuals

    jets = concatenate([pythia_jets["top"], pythia_jets["qcd"]])
    pre = preprocess(jets)
    class_names = {label_index("Tbqq"): "top", label_index("QCD"): "QCD"}

    def typical_error(bins):  # median |mass residual| of top jets per source, for a grid fine in some features
        tokenizer = BinnedTokenizer(BinnedConfig(bins)).fit(pre.features, pre.mask)
        sources = mass_error_sources(tokenizer, pre, jets.label, class_names)
        assert set(sources) == {"top", "QCD"} and set(sources["top"]) == {"all", "pt", "angles"}
        all_features = token_residuals(tokenizer, pre, jets.label, class_names)["top"]["jet_mass"]
        np.testing.assert_allclose(sources["top"]["all"], all_features)
        perfect = mass_error_sources(tokenizer, pre, jets.label, class_names, reconstructed=pre.features)
        assert all(np.nanmax(np.abs(r)) < 1e-3 for r in perfect["top"].values())  # a given reconstruction is used
        return {source: np.nanmedian(np.abs(r)) for source, r in sources["top"].items()}

    fine_pt = typical_error((4000, 4, 4))  # pT kept to 0.1% of its range, angles in 4 bins
    assert fine_pt["pt"] < 0.02 * fine_pt["angles"] and fine_pt["angles"] > 1.0  # GeV
    fine_angles = typical_error((4, 4000, 4000))
    assert fine_angles["angles"] < 0.02 * fine_angles["pt"] and fine_angles["pt"] > 1.0


# --- the jet-level term ---------------------------------------------------


def test_jet_term_sees_the_jet_mass_of_the_observables(pythia_jets):
    from omnijet_lib.data.preprocessing import constituents_from_features
    from omnijet_lib.observables import jet_kinematics
    from omnijet_lib.tokenizers.vqvae import jet_four_momentum

    pre = preprocess(pythia_jets["top"])
    kept = constituents_from_features(pre.features, pre.mask, pre.jet_eta, pre.jet_phi)
    expected = jet_kinematics(kept)  # in the lab frame
    features, mask = torch.as_tensor(pre.features, dtype=torch.float64), torch.as_tensor(pre.mask)
    momentum, pt_sum = jet_four_momentum(features, mask, PreprocessingConfig())
    mass = torch.sqrt((momentum[:, 0] ** 2 - (momentum[:, 1:] ** 2).sum(-1)).clamp(min=0)).numpy()
    np.testing.assert_allclose(mass, expected["mass"], rtol=1e-6, atol=1e-6)  # the axis frame keeps the mass
    assert expected["mass"].mean() > 100  # top jets: a real test
    np.testing.assert_allclose(pt_sum.numpy(), ak_sum_pt(kept), rtol=1e-9)


def ak_sum_pt(constituents):
    import awkward as ak

    return ak.to_numpy(ak.sum(constituents.pt, axis=1))


def test_jet_term_is_zero_for_a_perfect_reconstruction_and_grows_with_a_pt_scale(real):
    from omnijet_lib.tokenizers.vqvae import jet_reconstruction_loss

    (features, mask), _ = real
    features, mask = torch.as_tensor(features[:64]), torch.as_tensor(mask[:64])
    mask[0, 1:] = False  # a one-constituent jet: mass 0, still a finite gradient
    config = PreprocessingConfig()
    assert jet_reconstruction_loss(features, features, mask, config) < 1e-10
    losses = []
    for shift in (0.01, 0.05, 0.2):  # every pT scaled by e^shift
        moved = features.clone().requires_grad_(True)
        with torch.no_grad():
            moved[..., 0] += shift
        loss = jet_reconstruction_loss(features, moved, mask, config)
        loss.backward()
        assert torch.isfinite(moved.grad).all()
        losses.append(float(loss.detach()))
    assert losses[0] < losses[1] < losses[2]
    # a pT scale of e^s moves four-momentum and mass by (e^s - 1): the loss is (e^s - 1)^2 (|P|^2 / pT^2 + m^2 / m_scale^2)
    assert losses[1] == pytest.approx(float((math.exp(0.05) - 1) ** 2 * jet_norm(features, mask, config)), rel=1e-3)


def jet_norm(features, mask, config):
    from omnijet_lib.tokenizers.vqvae import MASS_FLOOR, jet_four_momentum

    momentum, pt = jet_four_momentum(features, mask, config)
    mass = (momentum[:, 0] ** 2 - (momentum[:, 1:] ** 2).sum(-1)).clamp(min=0).sqrt()
    mass_scale = torch.maximum(mass, MASS_FLOOR * pt)  # 1 for all but very narrow jets
    return (momentum.square().sum(-1) / pt.square() + (mass / mass_scale).square()).mean()


def test_vqvae_with_a_jet_term_trains_and_refuses_showers(real, tmp_path):
    from omnijet_lib.data.shower_preprocessing import ShowerPreprocessingConfig

    train, val = real
    config = dataclasses.replace(SMALL_VQ, jet_weight=2.0)
    tok = VQVAETokenizer(config, device="cpu")
    result = fit_vqvae(
        tok, train, val, TrainingConfig(epochs=1, batch_size=32, seed=3), tmp_path / "run", progress=False
    )
    assert np.isfinite(result.history[-1]["val_jet"]) and result.history[-1]["val_jet"] > 0
    with pytest.raises(ValueError, match="jet_weight must be"):
        VQVAEConfig(jet_weight=-1.0)
    # the finished run is not handed back to a tokenizer with another jet term
    other = VQVAETokenizer(dataclasses.replace(config, jet_weight=5.0), device="cpu")
    with pytest.raises(ValueError, match="config.jet_weight: 2.0 in the checkpoint, 5.0 given"):
        fit_vqvae(other, train, val, TrainingConfig(epochs=1, batch_size=32, seed=3), tmp_path / "run", progress=False)
    showers = VQVAETokenizer(dataclasses.replace(config, n_features=4), ShowerPreprocessingConfig(), device="cpu")
    features = np.zeros((4, 5, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="jet_weight needs jets"):
        fit_vqvae(
            showers,
            (features, features[..., 0] == 0),
            (features, features[..., 0] == 0),
            TrainingConfig(epochs=1),
            tmp_path / "s",
        )


def test_token_files_of_an_older_schema_are_named_and_made_again(pythia_jets, tmp_path):
    """Schema version 1 had no /jet_pt: reading one says so; tokenized() makes it again."""
    import h5py

    from omnijet_lib.tokenizers.token_files import SCHEMA_VERSION, tokenized

    jets = pythia_jets["qcd"][:40]
    jet_path = write_jets(tmp_path / "jets.h5", jets)
    pre = preprocess(jets)
    tok_path = BinnedTokenizer(BinnedConfig((5, 5, 5))).fit(pre.features, pre.mask).save(tmp_path / "tok.pt")
    out = tokenized(jet_path, tok_path, tmp_path / "tokens", progress=False)
    with h5py.File(out, "a") as file:  # as version 1 wrote it
        del file["jet_pt"]
        file.attrs["schema_version"] = 1
    with pytest.raises(BadDataError, match="no /jet_pt.*schema version 1.*tokenize"):
        read_token_file(out)
    assert tokenized(jet_path, tok_path, tmp_path / "tokens", progress=False) == out
    with h5py.File(out, "r") as file:
        assert file.attrs["schema_version"] == SCHEMA_VERSION
    np.testing.assert_array_equal(read_token_file(out).jet_pt, jets.pt.astype(np.float32))
