"""The samples a run trains on: tensors in memory or row sources read as needed, their batches, their fingerprint."""

from __future__ import annotations

import hashlib
from typing import Protocol

import numpy as np
import torch

from omnijet_lib.errors import is_int

# With lengths given, batches are formed inside windows of this many batches, sorted by length.
LENGTH_WINDOW = 50


def epoch_batches(
    n: int,
    batch_size: int,
    seed: int,
    epoch: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    lengths: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """The sample indices of every batch of one epoch, for process ``rank`` of ``world_size``.

    The order is a permutation from a generator seeded by (seed, epoch) alone -- not
    by torch's global RNG, which the model draws from -- so a resumed run rebuilds
    the epoch and skips the batches it has done.  The last batch may be smaller:
    no sample is dropped.

    Shards: rank r takes every ``world_size``-th index of the permutation, so the
    shards are disjoint, cover the epoch together, and batch j of all ranks
    together is the slice of the permutation that one process with batch size
    ``batch_size * world_size`` would see.  Shards may differ by one batch.

    :func:`train` under torchrun passes its ``rank``/``world_size`` here; a rank with
    one batch fewer takes its step on a batch of weight 0
    (:meth:`~omnijet_lib.training.distributed.Processes.steps_per_epoch`).

    ``lengths`` (one per sample, e.g. tokens per sequence) groups samples of
    similar length into a batch, so that a model that cuts the batch to its
    longest sample computes little padding: the shard is cut into windows of
    ``LENGTH_WINDOW`` batches, each window is sorted by length and split into
    batches, and the batches are shuffled.  Still a function of (seed, epoch).
    """
    if not (is_int(batch_size) and batch_size >= 1):
        msg = f"batch_size must be an integer >= 1, got {batch_size!r}"
        raise ValueError(msg)
    if not (is_int(world_size) and world_size >= 1 and is_int(rank) and 0 <= rank < world_size):
        msg = f"need 0 <= rank < world_size, got rank={rank!r}, world_size={world_size!r}"
        raise ValueError(msg)
    # SeedSequence mixes (seed, epoch) into one well-spread 64-bit seed: no two pairs share a stream.
    mixed = int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0])
    generator = torch.Generator().manual_seed(mixed)
    shard = torch.randperm(n, generator=generator)[rank::world_size]
    if lengths is None:
        return list(shard.split(batch_size))
    if len(lengths) != n:
        msg = f"lengths has {len(lengths)} entries for {n} samples"
        raise ValueError(msg)
    lengths = torch.as_tensor(lengths)
    windows = shard.split(LENGTH_WINDOW * batch_size)
    batches = [b for w in windows for b in w[lengths[w].argsort(stable=True)].split(batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator)]


DATA_FINGERPRINT = "data_fingerprint"  # the key of data_fingerprint in a checkpoint's describe
FINGERPRINT_ROWS = 512  # rows of each dataset hashed: enough to tell two datasets apart, cheap from disk


def data_fingerprint(*datasets: tuple[Samples, ...]) -> str:
    """A digest of the sizes and of up to ``FINGERPRINT_ROWS`` evenly spaced rows of every tensor or row source.

    Two runs on the same data agree; data that differ in size, or in any of the
    hashed rows (a new sample, another subset, another order), almost surely do not.
    Only these rows are read, so a row source on disk costs a few hundred reads.
    """
    digest = hashlib.sha256()
    for data in datasets:
        for samples in data:
            n = len(samples)
            rows = torch.linspace(0, n - 1, min(n, FINGERPRINT_ROWS)).round().long().unique()
            values = samples[rows] if isinstance(samples, torch.Tensor) else torch.as_tensor(samples[rows])
            values = values.detach().cpu().contiguous()
            digest.update(f"{n}|{tuple(values.shape)}|{values.dtype}|".encode())
            digest.update(values.numpy().tobytes())
    return digest.hexdigest()[:16]


class RowSource(Protocol):
    """Samples read as needed, e.g. from a file (:meth:`omnijet_lib.tokenizers.token_dataset.TokenDataset.rows`).

    ``source[index]`` takes a LongTensor of sample indices or a slice and returns a
    tensor whose first dimension is those samples, as indexing a tensor would.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: torch.Tensor | slice) -> torch.Tensor: ...


# One element of train's data: a tensor in memory, or a source that reads samples when asked.
Samples = torch.Tensor | RowSource


def is_row_source(samples: object) -> bool:
    """A sample source that is not a tensor: anything with ``len`` and ``[index]`` but containers of values."""
    if isinstance(samples, (torch.Tensor, np.ndarray, list, tuple, str, bytes, dict)):
        return False
    return hasattr(samples, "__len__") and hasattr(samples, "__getitem__")


def rows_in_order(samples: Samples, order: torch.Tensor) -> Samples:
    """The samples ``order`` of ``samples``: a tensor is indexed, a row source reads nothing until asked."""
    return samples[order] if isinstance(samples, torch.Tensor) else _RowsInOrder(samples, order)


class _RowsInOrder:
    """A row source's samples in another order (e.g. a validation set by length), without reading them."""

    def __init__(self, source: RowSource, order: torch.Tensor):
        self.source, self.order = source, torch.as_tensor(order, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: torch.Tensor | slice) -> torch.Tensor:
        return self.source[self.order[index]]


def _describe(samples: Samples) -> str:
    """A tensor's shape, or a row source's type and length, for error messages."""
    if isinstance(samples, torch.Tensor):
        return str(tuple(samples.shape))
    return f"{type(samples).__name__} of {len(samples)}"


def check_data(data: tuple[Samples, ...], name: str) -> int:
    """The number of samples in ``data``, a non-empty tuple of tensors or row sources sharing the first dimension."""
    if not isinstance(data, (tuple, list)) or not data:
        msg = f"{name} must be a tuple of tensors or row sources, e.g. (x, y) or (x,); got {type(data).__name__}"
        raise ValueError(msg)
    bad = [type(t).__name__ for t in data if not (isinstance(t, torch.Tensor) or is_row_source(t))]
    if bad:
        msg = (
            f"{name} must be a tuple of tensors or row sources (len() and [indices] -> tensor, "
            f"e.g. TokenDataset.rows(...)); got {', '.join(bad)}"
        )
        raise ValueError(msg)
    lengths = {len(t) if not isinstance(t, torch.Tensor) or t.ndim else 0 for t in data}
    if len(lengths) != 1 or 0 in lengths:
        shapes = ", ".join(_describe(t) for t in data)
        msg = f"{name}: the tensors must share a non-empty first (sample) dimension; got shapes [{shapes}]"
        raise ValueError(msg)
    return lengths.pop()


def take_rows(samples: Samples, index: torch.Tensor | slice, device: torch.device) -> torch.Tensor:
    """Samples ``index`` on ``device``; a row source reads them now and must give a tensor."""
    batch = samples[index]
    if not isinstance(batch, torch.Tensor):
        msg = f"a row source must return tensors; {type(samples).__name__}[...] returned {type(batch).__name__}"
        raise TypeError(msg)
    return batch.to(device, non_blocking=True)
