"""Cross-data pieces: tokenizer names, domain A's file, training subsets of domain B."""

import numpy as np
import pytest
from conftest import make_jets

from omnijet_lib.cross_data import domain_a_file, sample_distances, tokenizer_name, training_subset
from omnijet_lib.data.jet_files import write_jets
from omnijet_lib.data.preprocessing import PreprocessingConfig, preprocess
from omnijet_lib.tokenizers import BinnedConfig, BinnedTokenizer
from omnijet_lib.tokenizers.token_dataset import TokenDataset
from omnijet_lib.tokenizers.token_files import tokenize_file


def test_tokenizer_names_say_what_the_tokenizer_was_fitted_on():
    assert tokenizer_name("conditional-512", "a") == "dijet-conditional-512"
    assert tokenizer_name("conditional-512", "both") == "dijet+topqcd-conditional-512"
    with pytest.raises(ValueError, match="tokenizer_data must be one of"):
        tokenizer_name("conditional-512", "b")


def test_domain_a_may_be_any_jet_file(tmp_path):
    given = tmp_path / "aspen_open_jets.h5"
    given.write_bytes(b"")  # only its existence is checked here; reading it checks the schema
    assert domain_a_file(n_jets_a=10, seed=1, data_dir=tmp_path, a_file=given) == given
    with pytest.raises(FileNotFoundError, match="domain A's jet file not found"):
        domain_a_file(n_jets_a=10, seed=1, data_dir=tmp_path, a_file=tmp_path / "missing.h5")


def test_training_subsets_are_random_sorted_and_reproducible():
    train_idx = np.arange(100, 300)
    a, b = training_subset(train_idx, 50, 0), training_subset(train_idx, 50, 0)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 50 and np.all(np.diff(a) > 0) and set(a) <= set(train_idx)
    assert not np.array_equal(a, training_subset(train_idx, 50, 1))
    np.testing.assert_array_equal(training_subset(train_idx, 200, 3), train_idx)  # the whole split
    with pytest.raises(ValueError, match="the training split holds 200"):
        training_subset(train_idx, 201, 0)


def test_sample_distances_vanish_for_one_sample_and_grow_with_a_shift(tmp_path):
    """W1m, W1n and FPD of token sequences, decoded: zero against themselves, large against wider, heavier jets."""
    preprocessing = PreprocessingConfig(max_constituents=12)
    rng = np.random.default_rng(0)
    jets = {"narrow": make_jets(rng.integers(3, 13, 300), seed=1, spread=0.1),
            "wide": make_jets(rng.integers(3, 13, 300), seed=2, spread=0.4)}  # fmt: skip
    pre = preprocess(jets["narrow"], preprocessing)
    tokenizer = BinnedTokenizer(BinnedConfig((8, 8, 8)), preprocessing).fit(pre.features, pre.mask)
    tokenizer_file = tokenizer.save(tmp_path / "tok.pt")
    sequences = {}
    for name, sample in jets.items():
        write_jets(tmp_path / f"{name}.h5", sample)
        tokens = tokenize_file(tmp_path / f"{name}.h5", tokenizer_file, tmp_path / f"{name}_tokens.h5", progress=False)
        dataset = TokenDataset(tokens, progress=False)
        sequences[name] = dataset.read(np.arange(len(dataset))).sequences

    same = sample_distances(sequences["narrow"], sequences["narrow"], tokenizer, seed=0)
    assert same["w1m"] == 0 and same["w1n"] == 0 and same["n_generated"] == 300
    shifted = sample_distances(sequences["wide"], sequences["narrow"], tokenizer, seed=0)
    assert shifted["w1m"] > 10  # GeV: constituents spread wider (within the bins fitted on narrow jets) weigh more
    assert shifted["fpd"] > 100 * max(same["fpd"], 1e-6) and shifted["fpd_error"] >= 0
    with pytest.warns(UserWarning, match="no FPD: it needs 20 jets .* here 10 real and [0-9]+ generated"):
        few = sample_distances(sequences["wide"], sequences["narrow"][:10], tokenizer, seed=0)
    assert np.isnan(few["fpd"]) and few["w1m"] > 0
