"""Showers through the whole workflow: simulate -> tokenize -> train a GPT a little -> generate -> post-process."""

import h5py
import numpy as np
import pytest
import torch

from omnijet_lib.data.shower_files import read_showers
from omnijet_lib.data.shower_preprocessing import ShowerPreprocessingConfig, preprocess_showers
from omnijet_lib.data.shower_simulation import shower_dataset
from omnijet_lib.data.showers import GRID_SIZE, UNKNOWN_ENERGY
from omnijet_lib.generation import decode_generated_showers, generate_sequences
from omnijet_lib.generation.timing import reference_integrated
from omnijet_lib.metrics.distributions import wasserstein_distances
from omnijet_lib.metrics.shower_quality import shower_distributions
from omnijet_lib.shower_observables import SHOWER_OBSERVABLES
from omnijet_lib.models.gpt import GPTConfig
from omnijet_lib.tokenizers import QuantizerConfig, VQVAEConfig, load_tokenizer
from omnijet_lib.tokenizers.specs import build_tokenizer
from omnijet_lib.tokenizers.token_files import read_token_file, tokenized
from omnijet_lib.tokenizers.tokens import PAD
from omnijet_lib.training import TrainingConfig
from omnijet_lib.training.gpt import fit_gpt
from omnijet_lib.training.tokenizers import fit_tokenizer

TINY_VQVAE = VQVAEConfig(hidden_dim=8, n_layers=1, n_heads=2, quantizer=QuantizerConfig(beta=0.8, replace_every=100))


def test_shower_tokenizer_is_built_for_four_features_and_saved_as_such(tmp_path):
    config = ShowerPreprocessingConfig(max_hits=300)
    tok = build_tokenizer("conditional-16", preprocessing=config, vqvae=TINY_VQVAE)
    assert tok.config.n_features == 4 and tok.codebook_size == 16
    loaded = load_tokenizer(tok.save(tmp_path / "tok.pt"))
    assert loaded.preprocessing == config  # the shower constants come back, not the jets'
    with pytest.raises(ValueError, match="binned tokenizer bins the 3 jet features only"):
        build_tokenizer("binned-10", preprocessing=config)


def test_normformer_attention_equals_multihead_attention():
    from omnijet_lib.tokenizers.vqvae import NormFormerBlock

    torch.manual_seed(0)
    block = NormFormerBlock(16, 4).eval()
    x, mask = torch.randn(3, 40, 16), torch.rand(3, 40) > 0.4
    mask[:, 0] = True
    with torch.no_grad():
        h = block.norm_in(x)
        expected, _ = block.attention(h, h, h, key_padding_mask=~mask, need_weights=False)
        torch.testing.assert_close(block.attend(h, mask)[mask], expected[mask], rtol=1e-5, atol=1e-6)


def test_simulate_tokenize_train_generate_postprocess(tmp_path):
    config = ShowerPreprocessingConfig()
    shower_file = shower_dataset(24, seed=3, energy=(10.0, 20.0), data_dir=tmp_path / "showers", progress=False)
    showers = read_showers(shower_file)
    features, mask = preprocess_showers(showers, config)
    training = TrainingConfig(epochs=1, batch_size=8, learning_rate=1e-3, seed=0)
    tok = build_tokenizer("conditional-32", preprocessing=config, vqvae=TINY_VQVAE)
    fit_tokenizer(tok, (features[:16], mask[:16]), (features[16:], mask[16:]), training=training,
                  run_dir=tmp_path / "vqvae", length_buckets=True, progress=False)  # fmt: skip
    tokenizer_file = tok.save(tmp_path / "tok.pt")

    stored = read_token_file(tokenized(shower_file, tokenizer_file, tmp_path / "tokens", progress=False))
    assert stored.content == "showers" and len(stored) == 24
    np.testing.assert_array_equal(stored.incident_energy, showers.incident_energy)
    np.testing.assert_array_equal(stored.lengths, mask.sum(1) + 2)  # START, one token per hit, STOP
    tokens, stored_mask = stored.tokens(max_length=config.max_hits)
    np.testing.assert_array_equal(tokens, tok.encode(features, mask))

    gpt = GPTConfig(codebook_size=32, embed_dim=16, n_heads=2, n_blocks=1, ffn_dim=32,
                    max_length=stored.sequences.shape[1])  # fmt: skip
    model, result = fit_gpt(
        gpt, stored.sequences[:16], stored.sequences[16:], training, tmp_path / "gpt", progress=False
    )
    assert np.isfinite(result.best_val_loss)

    generated = generate_sequences(model, 6, batch_size=3, seed=1, progress=False)
    assert generated.shape[1] <= config.max_hits + 2
    lengths = (generated != PAD).sum(axis=1)
    assert np.all(generated[np.arange(6), lengths - 1] == gpt.stop_token)  # every sequence ends with STOP
    gen, kept = decode_generated_showers(generated, tok)
    features_out, mask_out, _ = tok.decode_sequences(generated)
    assert len(gen) == len(kept) and np.all(gen.incident_energy == UNKNOWN_ENERGY)
    np.testing.assert_array_equal(gen.n_hits, mask_out.sum(1))  # post-processing keeps every hit
    for shower in gen.hits:
        real = shower[shower[:, 3] > 0]
        assert np.all(real[:, :3] == np.round(real[:, :3])) and real[:, :3].min() >= 0
        assert real[:, :3].max() <= GRID_SIZE - 1
        assert len(np.unique(real[:, :3], axis=0)) == len(real)  # one hit per cell
    distances = wasserstein_distances(shower_distributions(gen), shower_distributions(showers))
    assert list(distances) == list(SHOWER_OBSERVABLES) and np.isfinite(list(distances.values())).all()

    seconds, lengths_timed, step_seconds = reference_integrated(model, 2, 50, 4, 1, torch.Generator().manual_seed(0))
    assert lengths_timed[0] == 1 and lengths_timed[-1] == 50 and seconds > 0 and np.all(step_seconds > 0)


def test_cli_simulates_and_tokenizes_showers(tmp_path, capsys):
    from omnijet_lib.cli import main

    out = tmp_path / "photons.h5"
    assert main(["simulate-showers", "--n", "20", "--energy", "30", "--seed", "4", "--out", str(out)]) == 0
    showers = read_showers(out)
    assert len(showers) == 20 and np.all(showers.incident_energy == 30.0)
    assert main(["simulate-showers", "--n", "5", "--energy", "1", "2", "3", "--seed", "4", "--out", str(out)]) == 2
    assert "one value or a range" in capsys.readouterr().err

    config = ShowerPreprocessingConfig()
    tok = build_tokenizer("unconditional-16", preprocessing=config, vqvae=TINY_VQVAE)
    features, mask = preprocess_showers(showers, config)
    fit_tokenizer(tok, (features, mask), (features, mask), training=TrainingConfig(epochs=1, batch_size=10),
                  run_dir=tmp_path / "run", progress=False)  # fmt: skip
    tokens_out = tmp_path / "tokens.h5"
    assert (
        main(["tokenize", str(out), "--tokenizer", str(tok.save(tmp_path / "tok.pt")), "--out", str(tokens_out)]) == 0
    )
    stored = read_token_file(tokens_out)
    with h5py.File(tokens_out) as file:  # the tokenizer file is recorded, though it was loaded only once
        assert file.attrs["tokenizer"] == str(tmp_path / "tok.pt") and file.attrs["source"] == str(out)
    assert stored.content == "showers" and np.array_equal(stored.lengths, mask.sum(1) + 2)
