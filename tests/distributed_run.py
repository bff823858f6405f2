"""A small training run for tests/test_distributed.py: alone, or as one of torchrun's processes.

A regression MLP whose loss is a mean over per-sample units of unequal number (as a
GPT's loss is a mean over real tokens), so that shards of one batch carry unequal
weights; 97 samples, so that with batch size 8 on 2 processes one rank has a batch
fewer in every epoch.  Or (``--vqvae``) a small VQ-VAE on random "jets", whose
k-means start and dead-code replacement draw from each process's own shard; every
process then writes its codebook to ``<run_dir>/codebook_rank<r>.pt``.
"""

import argparse
import os
import signal
from pathlib import Path

import torch
from torch import nn

from omnijet_lib.tokenizers import QuantizerConfig, VQVAEConfig
from omnijet_lib.tokenizers.vqvae import VQVAE
from omnijet_lib.training import StepOutput, TrainingConfig, train
from omnijet_lib.training.tokenizers import vqvae_loss


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
    parser.add_argument("--vqvae", action="store_true", help="train a small VQ-VAE instead")
    args = parser.parse_args()
    if args.vqvae:
        train_vqvae(args)
        return

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


def train_vqvae(args) -> None:
    rank = int(os.environ.get("RANK", "0"))
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(80, 12, 3, generator=generator)
    mask = torch.arange(12) < torch.randint(4, 13, (80, 1), generator=generator)
    features = features * mask[..., None]
    quantizer = QuantizerConfig(codebook_size=32, replace_every=3)  # k-means start, then frequent replacement
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(hidden_dim=16, n_heads=2, n_layers=1, quantizer=quantizer))
    config = TrainingConfig(epochs=2, batch_size=args.batch_size, learning_rate=3e-3, seed=3, device="cpu")
    data = (features[:64], mask[:64]), (features[64:], mask[64:])
    train(model, *data, vqvae_loss, config, args.run_dir, progress=False)
    torch.save(model.quantizer.codebook().detach(), Path(args.run_dir) / f"codebook_rank{rank}.pt")


if __name__ == "__main__":
    main()
