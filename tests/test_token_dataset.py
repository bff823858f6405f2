"""Token files read from disk as one dataset: the same batches, the same training, as reading them into memory."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch

from omnijet_lib.data.jet_files import write_jets
from omnijet_lib.data.preprocessing import preprocess
from omnijet_lib.data.splits import split_indices
from omnijet_lib.errors import BadDataError
from omnijet_lib.models.gpt import GPTConfig
from omnijet_lib.tokenizers import BinnedConfig, BinnedTokenizer
from omnijet_lib.tokenizers.token_dataset import TokenDataset
from omnijet_lib.tokenizers.token_files import COLUMNS, read_token_file, tokenize_file
from omnijet_lib.tokenizers.tokens import PAD
from omnijet_lib.training import TrainingConfig, epoch_batches
from omnijet_lib.training.gpt import fit_gpt


def tokenize(jets, bins: int, directory, name: str):
    """A real token file: ``jets`` written to a jet file and tokenized by a binned tokenizer of bins^3 codes."""
    pre = preprocess(jets)
    tokenizer = BinnedTokenizer(BinnedConfig((bins, bins, bins))).fit(pre.features, pre.mask)
    jet_path = write_jets(directory / f"{name}_jets.h5", jets)
    return tokenize_file(jet_path, tokenizer, directory / f"{name}.h5", chunk_size=128, progress=False)


@pytest.fixture(scope="module")
def shards(pythia_jets, tmp_path_factory):
    """Token files of the real top and QCD jets (one tokenizer each, 512 codes), and one of 125 codes."""
    directory = tmp_path_factory.mktemp("tokens")
    return {
        "top": tokenize(pythia_jets["top"], 8, directory, "top"),
        "qcd": tokenize(pythia_jets["qcd"], 8, directory, "qcd"),
        "coarse": tokenize(pythia_jets["qcd"][:50], 5, directory, "coarse"),
    }


@pytest.fixture(scope="module")
def in_memory(shards):
    """What the notebooks did: both files read whole and concatenated, top first."""
    parts = [read_token_file(shards[name]) for name in ("top", "qcd")]
    sequences = np.concatenate([p.sequences for p in parts])
    columns = {name: np.concatenate([p.columns[name] for p in parts]) for name in COLUMNS["jets"]}
    return sequences, columns


def test_new_files_are_contiguous_uncompressed_int16(shards):
    with h5py.File(shards["top"], "r") as file:
        for name in ("sequences", *COLUMNS["jets"]):
            assert file[name].chunks is None and file[name].compression is None
        assert file["sequences"].dtype == np.int16


def test_file_backed_batches_equal_in_memory_batches(shards, in_memory):
    sequences, _ = in_memory
    dataset = TokenDataset([shards["top"], shards["qcd"]], progress=False)
    np.testing.assert_array_equal(dataset.lengths, (sequences != PAD).sum(axis=1))
    train_idx, val_idx, _ = split_indices(len(dataset), seed=3)
    view, memory = dataset.rows(train_idx), torch.as_tensor(sequences[train_idx])
    np.testing.assert_array_equal(view.lengths, (memory != PAD).sum(dim=1))
    for lengths in (None, torch.as_tensor(view.lengths)):
        for epoch in range(3):
            for idx in epoch_batches(len(view), 32, seed=7, epoch=epoch, lengths=lengths):
                batch = view[idx]
                assert batch.dtype == torch.long and torch.equal(batch, memory[idx])
    val_view, val_memory = dataset.rows(val_idx), torch.as_tensor(sequences[val_idx])
    for start in range(0, len(val_view), 50):  # validation reads slices
        assert torch.equal(val_view[start : start + 50], val_memory[start : start + 50])
    assert torch.equal(val_view[-1], val_memory[-1])


def test_training_from_files_equals_training_in_memory(shards, in_memory, tmp_path):
    sequences, _ = in_memory
    dataset = TokenDataset([shards["top"], shards["qcd"]], progress=False)
    train_idx, val_idx, _ = split_indices(len(dataset), seed=1)
    config = GPTConfig(codebook_size=512, embed_dim=16, n_heads=2, n_blocks=1, ffn_dim=32, max_length=130)
    training = TrainingConfig(epochs=2, batch_size=64, learning_rate=3e-3, seed=0, device="cpu")
    runs = {
        "memory": (sequences[train_idx], sequences[val_idx]),
        "files": (dataset.rows(train_idx), dataset.rows(val_idx)),
    }
    results = {name: fit_gpt(config, *data, training, tmp_path / name, progress=False) for name, data in runs.items()}
    (model_a, result_a), (model_b, result_b) = results.values()
    without_time = [
        [{k: v for k, v in r.items() if k != "seconds"} for r in res.history] for res in (result_a, result_b)
    ]
    assert without_time[0] == without_time[1]
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_shards_are_their_concatenation_columns_too(shards, in_memory):
    sequences, columns = in_memory
    with TokenDataset([shards["top"], shards["qcd"]], progress=False) as dataset:
        assert len(dataset) == len(sequences) and dataset.codebook_size == 512 and dataset.content == "jets"
        whole = dataset.read(np.arange(len(dataset)))
        np.testing.assert_array_equal(whole.sequences, sequences)
        indices = np.random.default_rng(0).integers(0, len(dataset), 200)  # both shards, unsorted, repeats
        part = dataset.read(indices)
        np.testing.assert_array_equal(part.sequences, sequences[indices])
        for name in COLUMNS["jets"]:
            np.testing.assert_array_equal(whole.columns[name], columns[name])
            np.testing.assert_array_equal(part.columns[name], columns[name][indices])
            np.testing.assert_array_equal(dataset.column(name), columns[name])
            np.testing.assert_array_equal(dataset.column(name, indices), columns[name][indices])
        with pytest.raises(KeyError, match="incident_energy"):
            dataset.column("incident_energy")
        with pytest.raises(IndexError, match="outside the dataset"):
            dataset.read([len(dataset)])
    # a pickled dataset (a DataLoader worker's) reopens its files
    dataset = pickle.loads(pickle.dumps(dataset))
    np.testing.assert_array_equal(dataset.sequences(indices), sequences[indices])


def test_shards_of_another_tokenizer_or_content_are_refused(shards, tmp_path):
    with pytest.raises(BadDataError, match="top.h5 and .*coarse.h5 differ in codebook_size \\(512 vs 125\\)"):
        TokenDataset([shards["top"], shards["coarse"]])
    showers = tmp_path / "showers.h5"  # the QCD file relabelled as showers, valid as such
    with h5py.File(shards["qcd"], "r") as source, h5py.File(showers, "w") as file:
        file.attrs.update(source.attrs)
        file.attrs["content"] = "showers"
        file["sequences"] = source["sequences"][:]
        file["incident_energy"] = np.ones(len(source["sequences"]), dtype="f4")
    with pytest.raises(BadDataError, match="differ in content \\('jets' vs 'showers'\\)"):
        TokenDataset([shards["qcd"], showers])


def test_files_of_the_old_layout_read_the_same(shards, in_memory, tmp_path):
    """Token files written before: gzip-chunked datasets, int32 sequences."""
    old = tmp_path / "old.h5"
    with h5py.File(shards["qcd"], "r") as source, h5py.File(old, "w") as file:
        file.attrs.update(source.attrs)
        for name, values in source.items():
            dtype = "i4" if name == "sequences" else values.dtype
            file.create_dataset(name, data=values[:].astype(dtype), chunks=True, compression="gzip", shuffle=True)
    new = read_token_file(shards["qcd"])
    np.testing.assert_array_equal(read_token_file(old).sequences, new.sequences)
    sequences, _ = in_memory
    mixed = TokenDataset([shards["top"], old], progress=False)  # an old and a new shard
    indices = np.random.default_rng(1).permutation(len(mixed))[:100]
    np.testing.assert_array_equal(mixed.sequences(indices), sequences[indices])
    np.testing.assert_array_equal(
        mixed.read(indices).label, np.concatenate([read_token_file(shards["top"]).label, new.label])[indices]
    )
