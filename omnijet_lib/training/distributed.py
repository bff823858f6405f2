"""Data-parallel training over several processes (torchrun): who this process is, what the loop shares.

docs/scaling.md tells the whole story.  Under ``torchrun --nproc-per-node N`` every process runs the same script, and
:func:`train` finds its place from the environment torchrun sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...).  Each process trains a copy of
the model on its shard of every batch; torch's ``DistributedDataParallel``
averages the gradients, so all copies take the same optimizer step.  Without
torchrun there is one process, and nothing here communicates.

Why the loss is rescaled before ``backward``: a loss is a mean over its batch's units
(a GPT's real tokens), and the shards of one batch hold different numbers of units.
DDP averages the shards' gradients with equal weights; scaling shard r's loss by
``world_size * w_r / sum(w)`` turns that average into the gradient of the mean over
the whole batch.  So N processes with batch size B train as one process with
batch size N * B does, up to floating-point rounding.
"""

from __future__ import annotations

import atexit
import gc
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

_UNITS = "\0units"  # the name the units' count travels under in weighted_means, clashing with no metric


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes: ``rank`` of ``world_size``."""

    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0, the one process that writes checkpoints, history and progress."""
        return self.rank == 0

    def steps_per_epoch(self, n: int, batch_size: int) -> int:
        """Optimizer steps in one epoch: the same on every rank (see :func:`~omnijet_lib.training.samples.epoch_batches`).

        Rank 0 has the largest shard, ``ceil(n / world_size)`` samples; a rank with
        one batch fewer (when the last batch has fewer samples than there are
        ranks) takes a step with a loss of weight 0, as DDP needs every rank in
        every step.
        """
        return math.ceil(math.ceil(n / self.world_size) / batch_size)

    def torch_seed(self, seed: int) -> int:
        """The seed of torch's RNG on this rank: ``seed`` on rank 0, so one process runs as before;
        another stream on every other rank, so their dropout masks differ."""
        if self.rank == 0:
            return seed
        return int(np.random.SeedSequence([seed, self.rank]).generate_state(1, dtype=np.uint32)[0])

    # ------------------------------------------------------------------ collectives (no-ops for one process)

    def sum(self, values: dict[str, float], device: torch.device) -> dict[str, float]:
        """Each value summed over all ranks (every rank must pass the same names)."""
        if not self.distributed:
            return dict(values)
        names = sorted(values)
        total = torch.tensor([float(values[n]) for n in names], dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return dict(zip(names, total.tolist()))

    def gather(self, obj) -> list:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def weighted_means(
        self, values: dict[str, float], weight: float, device: torch.device
    ) -> tuple[dict[str, float], float]:
        """``values`` (means over ``weight`` units on this rank) as means over every rank's units, and the units' total."""
        if not self.distributed:
            return dict(values), weight
        sums = self.sum({name: value * weight for name, value in values.items()} | {_UNITS: weight}, device)
        total = sums.pop(_UNITS)
        if total <= 0:
            msg = "the loss of this step has no units on any process (every shard's weight is 0)"
            raise ValueError(msg)
        return {name: value / total for name, value in sums.items()}, total

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` rows (e.g. the validation set); the parts differ by one row at most."""
        return slice(self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size)

    def wait_for_main(self) -> None:
        """Every rank waits here until all have arrived: files rank 0 wrote before are there to read."""
        if self.distributed:
            dist.barrier()

    def from_main(self, obj):
        """Rank 0's ``obj`` on every rank (what the others pass is ignored)."""
        if not self.distributed:
            return obj
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def join_processes() -> Processes:
    """This process's :class:`Processes`; under torchrun, joins the process group first (once).

    gloo (CPU) or NCCL (CUDA): NCCL when CUDA is present, as torch's collectives
    then run on the GPUs; gloo otherwise, which also lets ``make test`` run two
    processes on a laptop.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Processes()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(_leave_process_group)
    return Processes(rank=dist.get_rank(), world_size=dist.get_world_size())


def _leave_process_group() -> None:
    """At exit, while the interpreter is whole: the group, and the DDP wrappers that hold it, taken down.

    Left to the destructors of interpreter shutdown, gloo's threads can abort the process
    ("terminate called without an active exception") after the work is done.  A DDP
    wrapper keeps the group alive from inside reference cycles, hence the collection first.
    """
    gc.collect()
    if dist.is_initialized():
        dist.destroy_process_group()


def process_device(device: torch.device, processes: Processes) -> torch.device:
    """Under torchrun, each process on a node takes its own GPU: ``cuda:LOCAL_RANK``."""
    if processes.distributed and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


class LossModule(nn.Module):
    """``loss_fn(model, batch)`` as a module's forward, for ``DistributedDataParallel`` to wrap.

    DDP synchronises the gradients of what runs through its wrapper's forward; the
    loss functions call their model's parts (``model.backbone``, ``model.head``)
    rather than its forward, so the forward DDP sees is the whole loss.
    """

    def __init__(self, model: nn.Module, loss_fn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch):
        return self.loss_fn(self.model, batch)


def data_parallel(step: LossModule, processes: Processes, device: torch.device) -> nn.Module:
    """``step`` itself for one process, else wrapped in ``DistributedDataParallel`` (which also copies
    rank 0's weights to every rank)."""
    if not processes.distributed:
        return step
    # static_graph: a model may hold parts its loss never uses (the head of another tokenization); DDP
    # would wait for their gradients forever.  Which parts a loss uses is fixed by the model's config, the
    # same in every step, and DDP learns it in the first step instead of searching the graph in every one.
    return nn.parallel.DistributedDataParallel(
        step, device_ids=[device.index] if device.type == "cuda" else None, static_graph=True
    )
