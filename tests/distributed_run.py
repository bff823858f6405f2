"""A small training run for tests/test_distributed.py: alone, or as one of torchrun's processes.

A regression MLP whose loss is a mean over per-sample units of unequal number (as a
GPT's loss is a mean over real tokens), so that shards of one batch carry unequal
weights; 97 samples, so that with batch size 8 on 2 processes one rank has a batch
fewer in every epoch.
"""

import argparse
import os
import signal
from pathlib import Path

import torch
from torch import nn

from omnijet_lib.training import StepOutput, TrainingConfig, train


def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> StepOutput:
    x, y, units = batch
    squared = (model(x).squeeze(-1) - y) ** 2
    n_units = float(units.sum())
    mae = float((squared.detach().sqrt() * units).sum()) / n_units
    return StepOutput((units * squared).sum() / n_units, {"mae": mae}, n_units)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--kill-at-step", type=int, default=None, help="rank 1 kills itself (SIGKILL) after this step")
    parser.add_argument("--kill-marker", default=None, help="file made when it does: it kills only once")
    parser.add_argument("--learning-rate-on-rank-1", type=float, default=None, help="give rank 1 another config")
    args = parser.parse_args()

    rank = int(os.environ.get("RANK", "0"))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(120, 4, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(120, generator=generator)
    units = torch.randint(1, 6, (120,), generator=generator).float()
    train_data, val_data = (x[:97], y[:97], units[:97]), (x[97:], y[97:], units[97:])

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    learning_rate = 0.05
    if rank == 1 and args.learning_rate_on_rank_1 is not None:
        learning_rate = args.learning_rate_on_rank_1
    config = TrainingConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=learning_rate, seed=3, checkpoint_every=2,
        lr_schedule="cosine", device="cpu",
    )  # fmt: skip

    def on_step(step: int) -> None:
        if rank == 1 and step == args.kill_at_step and not Path(args.kill_marker).exists():
            Path(args.kill_marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)

    train(model, train_data, val_data, loss_fn, config, args.run_dir, progress=False, on_step=on_step)


if __name__ == "__main__":
    main()
