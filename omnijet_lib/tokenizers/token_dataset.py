"""Token files read as one dataset, row by row from disk: training data larger than memory.

    dataset = TokenDataset(["top.h5", "qcd.h5"])         # shards, in this order
    train, val, test = split_indices(len(dataset), seed=1)
    fit_gpt(config, dataset.rows(train), dataset.rows(val), training, run_dir)
    test_jets = dataset.read(test)                        # TokenSequences, columns too

Nothing reads a file whole: :class:`TokenDataset` holds per-sequence lengths
(two bytes a sequence, from one chunked pass), and reads the rows a batch asks
for when it asks.  Token files store their datasets contiguous and uncompressed
(:mod:`omnijet_lib.tokenizers.token_files`), so 64 random rows take about a millisecond;
files of the older gzip layout read the same, only slower.

Several files (shards: one per class, or many files of one class) are one dataset,
indexed 0..N-1 in the order given: rows of the first file first.  They must agree
on what the GPT reads: content, codebook size and sequence width.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Self

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from omnijet_lib.errors import BadDataError
from omnijet_lib.tokenizers.token_files import COLUMNS, TokenFileInfo, TokenSequences, open_token_file, token_file_info
from omnijet_lib.tokenizers.tokens import PAD

# Rows read at once by the passes over whole files (lengths): 2^16 rows of 130 int16 are 17 MB.
PASS_ROWS = 1 << 16


class TokenDataset:
    """One or several token files (shards) as one dataset of sequences, read from disk as needed.

    ``paths`` are read in the order given; every shard's schema is checked here and
    a shard that differs from the first in content, codebook size or sequence
    width is refused, naming both files.  HDF5 files are opened on first read and
    closed by :meth:`close` (or leaving a ``with`` block); a pickled dataset (for
    DataLoader workers) reopens them, as does a forked process.
    """

    def __init__(self, paths: str | os.PathLike | Iterable[str | os.PathLike], *, progress: bool = True):
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        if not paths:
            msg = "TokenDataset needs at least one token file"
            raise ValueError(msg)
        self.shards: tuple[TokenFileInfo, ...] = tuple(token_file_info(p) for p in paths)
        for shard in self.shards[1:]:
            _check_same_kind(self.shards[0], shard)
        # Shard s holds dataset indices offsets[s] .. offsets[s + 1] - 1.
        self.offsets = np.cumsum([0] + [s.n_sequences for s in self.shards])
        self.progress = progress
        self._lengths: np.ndarray | None = None
        self._files: dict[int, h5py.File] = {}
        self._stored: dict[tuple[int, str], h5py.Dataset] = {}  # looking a dataset up costs as much as a read
        self._pid = os.getpid()

    # ------------------------------------------------------------------ what it holds

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(s.path for s in self.shards)

    @property
    def content(self) -> str:
        return self.shards[0].content

    @property
    def codebook_size(self) -> int:
        return self.shards[0].codebook_size

    @property
    def width(self) -> int:
        """Tokens per stored row (START, STOP and padding included): the T of ``(N, T)``."""
        return self.shards[0].width

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per sequence, START and STOP included (int16), from one chunked pass on first use."""
        if self._lengths is None:
            self._lengths = self._count_lengths()
        return self._lengths

    def __repr__(self) -> str:
        names = ", ".join(p.name for p in self.paths)
        return f"TokenDataset({len(self)} {self.content}, codebook_size={self.codebook_size}, shards: {names})"

    # ------------------------------------------------------------------ reading

    def sequences(self, indices) -> np.ndarray:
        """The sequences ``(len(indices), T)`` int64 of dataset rows ``indices``, in the order given."""
        return self._gather("sequences", self._checked(indices)).astype(np.int64, copy=False)

    def read(self, indices) -> TokenSequences:
        """Rows ``indices`` (in the order given, repeats allowed) with their columns, as read_token_file gives them."""
        indices = self._checked(indices)
        columns = {name: self._gather(name, indices) for name in COLUMNS[self.content]}
        return TokenSequences(self.sequences(indices), columns, self.codebook_size, self.content)

    def column(self, name: str, indices=None) -> np.ndarray:
        """A per-sequence column (one of ``COLUMNS[content]``, e.g. ``label``) of rows ``indices``, all by default."""
        if name not in COLUMNS[self.content]:
            msg = f"token files of {self.content} have no column {name!r}; they have {sorted(COLUMNS[self.content])}"
            raise KeyError(msg)
        if indices is None:  # small (one number a sequence): read whole, shard by shard
            return np.concatenate([self._dataset(shard, name)[:] for shard in range(len(self.shards))])
        return self._gather(name, self._checked(indices))

    def rows(self, indices=None) -> TokenRows:
        """A view of rows ``indices`` (all by default) for training: ``view[positions]`` -> LongTensor ``(B, T)``."""
        indices = np.arange(len(self)) if indices is None else self._checked(indices)
        return TokenRows(self, indices)

    def iter_chunks(self, chunk_size: int = PASS_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """``(first index, stored sequences)`` of consecutive rows, shard by shard, in the file's dtype."""
        for shard in range(len(self.shards)):
            n = self.shards[shard].n_sequences
            for start in range(0, n, chunk_size):
                yield int(self.offsets[shard]) + start, self._dataset(shard, "sequences")[start : start + chunk_size]

    def _count_lengths(self) -> np.ndarray:
        lengths = np.empty(len(self), dtype=np.int16 if self.width <= np.iinfo(np.int16).max else np.int32)
        with tqdm(total=len(self), desc="sequence lengths", unit="seq", disable=not self.progress) as bar:
            for start, block in self.iter_chunks():
                lengths[start : start + len(block)] = (block != PAD).sum(axis=1)
                bar.update(len(block))
        return lengths

    def _checked(self, indices) -> np.ndarray:
        indices = np.asarray(indices)
        if indices.ndim != 1 or not (indices.size == 0 or np.issubdtype(indices.dtype, np.integer)):
            msg = f"indices must be a 1-d array of integers, got {indices.dtype} of shape {indices.shape}"
            raise TypeError(msg)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            msg = f"indices {indices.min()}..{indices.max()} outside the dataset's {len(self)} sequences (0..{len(self) - 1})"
            raise IndexError(msg)
        return indices.astype(np.int64, copy=False)

    def _gather(self, name: str, indices: np.ndarray) -> np.ndarray:
        """Dataset ``name`` at rows ``indices``: each shard reads its rows once, ascending (as HDF5 wants), then reorders."""
        shard_of = np.searchsorted(self.offsets, indices, side="right") - 1
        shards = np.unique(shard_of)
        stored = [self._dataset(shard, name) for shard in shards] or [self._dataset(0, name)]
        # Shards of the old layout store int32 sequences, new ones int16: the wider type holds both.
        out = np.empty((len(indices), *stored[0].shape[1:]), dtype=np.result_type(*(d.dtype for d in stored)))
        for shard in shards:
            here = shard_of == shard
            rows, position = np.unique(indices[here] - self.offsets[shard], return_inverse=True)
            out[here] = _read_rows(self._dataset(shard, name), rows)[position]
        return out

    # ------------------------------------------------------------------ file handles

    def _dataset(self, shard: int, name: str) -> h5py.Dataset:
        """Dataset ``name`` of shard ``shard``, its file opened on first use."""
        if self._pid != os.getpid():  # a forked child must not share the parent's HDF5 handles
            self._files, self._stored, self._pid = {}, {}, os.getpid()
        if (shard, name) not in self._stored:
            if shard not in self._files:
                self._files[shard] = open_token_file(self.shards[shard].path)[0]
            self._stored[shard, name] = self._files[shard][name]
        return self._stored[shard, name]

    def close(self) -> None:
        """Close the open files; a later read opens them again."""
        files, self._files, self._stored = self._files, {}, {}
        if self._pid == os.getpid():
            for file in files.values():
                file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit h5py may be gone already
            self.close()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_files": {}, "_stored": {}}


class TokenRows:
    """Rows ``indices`` of a :class:`TokenDataset`, a sample source for :func:`omnijet_lib.training.train`.

    ``view[positions]`` (a LongTensor, array, slice or int of positions within the
    view) reads those rows from disk -> LongTensor ``(B, T)``; nothing is held but
    the indices.
    """

    def __init__(self, dataset: TokenDataset, indices: np.ndarray):
        self.dataset = dataset
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, positions) -> torch.Tensor:
        if isinstance(positions, torch.Tensor):
            positions = positions.numpy(force=True)
        picked = self.indices[positions]  # numpy's rules: negatives count from the end, out of range raises
        if np.ndim(picked) == 0:
            return torch.from_numpy(self.dataset.sequences([picked])[0])
        return torch.from_numpy(self.dataset.sequences(picked))

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per sequence of the view's rows (from the dataset's one pass)."""
        return self.dataset.lengths[self.indices]

    def read(self) -> TokenSequences:
        """All of the view's rows with their columns, in memory."""
        return self.dataset.read(self.indices)

    def __repr__(self) -> str:
        return f"TokenRows({len(self)} of {self.dataset!r})"


def _check_same_kind(first: TokenFileInfo, other: TokenFileInfo) -> None:
    """Refuse a shard that the GPT would read differently from the first one."""
    for what in ("content", "codebook_size", "width"):
        a, b = getattr(first, what), getattr(other, what)
        if a != b:
            msg = (
                f"token files {first.path} and {other.path} differ in {what} ({a!r} vs {b!r}); "
                "the shards of one dataset must come from one tokenizer and one kind of data"
            )
            raise BadDataError(msg)


def _read_rows(dataset: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (ascending, unique) of an HDF5 dataset: one slice when they are consecutive."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        return dataset[rows[0] : rows[-1] + 1]
    return dataset[rows]
