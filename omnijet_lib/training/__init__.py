"""The one training loop of the project, and what trains each model on it.

    result = train(model, (x_train,), (x_val,), loss_fn, TrainingConfig(epochs=20), "runs/vqvae")

Everything model-specific lives in ``loss_fn(model, batch) -> StepOutput``; this
loop knows nothing about jets, codebooks or tokens.

Runs resume, exactly.  ``run_dir/last.pt`` is written every ``checkpoint_every``
optimizer steps, at every epoch end and on Ctrl-C, and calling :func:`train`
again with the same ``run_dir`` continues from it.  The batch order depends only
on (seed, epoch), and the checkpoint holds torch's RNG state and the position
inside the epoch, so on CPU a run that was interrupted and resumed ends with
bit-identical weights and history to one that never stopped -- also when it
resumes from an older checkpoint, as after ``kill -9``.

Runs scale out.  Under ``torchrun --nproc-per-node N`` (any number of processes
and nodes; gloo on CPUs, NCCL on GPUs) every process trains its shard of each
batch and ``DistributedDataParallel`` averages the gradients, so N processes with
``batch_size`` B train as one process with N * B does; rank 0 alone writes the
checkpoints, ``history.json`` and the progress bar, and a checkpoint holds every
rank's RNG, so a run killed in either mode resumes exactly with the same number
of processes (:mod:`~omnijet_lib.training.distributed`).  The ``run_dir`` must be
on a disk every node sees: the callers read ``best.pt`` from it when training ends.

Files in ``run_dir``:

    last.pt       the latest consistent state (read it with :func:`load_checkpoint`)
    best.pt       the state after the epoch with the lowest validation loss
    history.json  one record per finished epoch, for humans
    lock          held while a run trains here, so two runs cannot share the folder

Epochs count from 0: ``result.history[result.best_epoch]`` is the best epoch's record.

Why not PyTorch Lightning: the loop is a few hundred lines a physicist can read top to
bottom, and what the project needs of it -- a resume that is exact to the bit
(RNG state and position inside the epoch), atomic checkpoints, batches of similar
lengths, data read from disk as a batch asks for it, an ``evaluate`` hook that
generates -- is in those lines, with no framework between the notebook and the
model to learn, pin and debug.

Modules: :mod:`~omnijet_lib.training.config` (the config, what a loss returns),
:mod:`~omnijet_lib.training.samples` (data in memory or on disk, batches),
:mod:`~omnijet_lib.training.distributed` (torchrun's processes),
:mod:`~omnijet_lib.training.run_checks` (whether a run_dir may be continued),
:mod:`~omnijet_lib.training.loop` (the loop), and one module per thing trained
on it -- :mod:`~omnijet_lib.training.gpt` (the jet and shower GPT),
:mod:`~omnijet_lib.training.spatial_gpt` (the direct-token shower model),
:mod:`~omnijet_lib.training.tokenizers` (VQ-VAE tokenizers). Models and
tokenizers sit below this layer and know nothing of it.
"""

from omnijet_lib.training.config import (
    LR_SCHEDULES,
    RESUMABLE_CHANGES,
    LossFn,
    StepOutput,
    TrainingConfig,
    TrainingResult,
    learning_rate_factor,
)
from omnijet_lib.training.loop import train
from omnijet_lib.training.samples import (
    RowSource,
    Samples,
    data_fingerprint,
    epoch_batches,
    is_row_source,
    rows_in_order,
)

__all__ = [
    "LR_SCHEDULES",
    "RESUMABLE_CHANGES",
    "LossFn",
    "RowSource",
    "Samples",
    "StepOutput",
    "TrainingConfig",
    "TrainingResult",
    "data_fingerprint",
    "epoch_batches",
    "is_row_source",
    "learning_rate_factor",
    "rows_in_order",
    "train",
]
