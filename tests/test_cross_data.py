"""Cross-data pieces: tokenizer names, domain A's file, training subsets of domain B."""

import numpy as np
import pytest

from omnijet_lib.cross_data import domain_a_file, tokenizer_name, training_subset


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
