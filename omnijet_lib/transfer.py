"""Transfer learning from jet generation to top tagging (paper sec. III.3, A.4).

Three strategies train the same :class:`~omnijet_lib.models.token_classifier.TokenClassifier`:

- ``scratch``: every weight random;
- ``finetune``: the backbone starts from a generative checkpoint, all weights train;
- ``frozen``: the backbone starts from the checkpoint and stays fixed; only the head trains.

AdamW (lr 1e-4, weight decay 0.01, constant), early stopping with a patience
that depends on the training size (:func:`patience_for`), best epoch by
validation loss; validation and test sets are fixed and shared by every run.

:func:`run_scan` trains every (size, strategy, seed) cell and keeps one row per
cell in ``results.csv``; a scan that is interrupted continues with the cells it
has not finished (an interrupted cell resumes from its own checkpoint).
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from omnijet_lib.atomic import atomic_path, file_digest
from omnijet_lib.checkpoints import load_checkpoint
from omnijet_lib.devices import pick_device
from omnijet_lib.metrics.tagging import tagging_metrics
from omnijet_lib.models.gpt import load_pretrained_weights
from omnijet_lib.models.token_classifier import TokenClassifier, TokenClassifierConfig
from omnijet_lib.tokenizers.token_dataset import TokenRows
from omnijet_lib.tokenizers.tokens import PAD
from omnijet_lib.training import StepOutput, TrainingConfig, train
from omnijet_lib.training.distributed import join_processes

STRATEGIES = ("scratch", "finetune", "frozen")
RESULT_FIELDS = (
    "size", "strategy", "seed", "accuracy", "auc", "rejection_30", "rejection_50",
    "best_epoch", "epochs_trained", "seconds",
)  # fmt: skip


def patience_for(n_train: int) -> int:
    """Early-stopping patience in epochs: 20 up to 10k training jets, 10 up to 1M, 5 beyond (paper A.4)."""
    return 20 if n_train <= 10_000 else 10 if n_train <= 1_000_000 else 5


def load_backbone(model: TokenClassifier, checkpoint_path: str | os.PathLike) -> list[str]:
    """Copy the backbone weights of a generative checkpoint (:func:`~omnijet_lib.models.gpt.fit_gpt`) into ``model``.

    Returns the names of the loaded tensors.  Refuses, naming what differs, a
    checkpoint that is not a GPT's, whose backbone config cannot serve the
    classifier's (:func:`~omnijet_lib.models.gpt.check_compatible`), or that lacks
    any backbone weight: nothing is loaded halfway.  The same loader
    (:func:`~omnijet_lib.models.gpt.load_pretrained_weights`) starts a generative
    GPT from a checkpoint (``fit_gpt(init_from=...)``).
    """
    return load_pretrained_weights(model, checkpoint_path, model.config.gpt, parts=("backbone",), what="the classifier")


def build_tagger(
    config: TokenClassifierConfig,
    strategy: str,
    *,
    pretrained: str | os.PathLike | None = None,
    seed: int = 0,
    learning_rate: float = 1e-4,
    weight_decay: float = 0.01,
) -> tuple[TokenClassifier, torch.optim.Optimizer, list[str]]:
    """A classifier ready to train with ``strategy``, its AdamW over the trainable weights, and the loaded names."""
    if strategy not in STRATEGIES:
        msg = f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}"
        raise ValueError(msg)
    if strategy != "scratch" and pretrained is None:
        msg = f"strategy {strategy!r} needs a pretrained generative checkpoint"
        raise ValueError(msg)
    torch.manual_seed(seed)  # the head (and, from scratch, the backbone) start from this seed
    model = TokenClassifier(config)
    loaded = load_backbone(model, pretrained) if strategy != "scratch" else []
    if strategy == "frozen":
        model.backbone.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=weight_decay)
    return model, optimizer, loaded


@dataclass(frozen=True)
class TaggingData:
    """Token sequences and 0/1 labels (1 = signal, top) of the training pool and the fixed val and test sets.

    The training pool may be any rows indexable by an index array, e.g. a
    :class:`~omnijet_lib.tokenizers.token_dataset.TokenRows` view that reads from disk.
    The jet pT [GeV] of every part is needed by a backbone conditioned on it
    (``GPTConfig.jet_pt_edges``), and ignored otherwise.
    """

    train_sequences: np.ndarray | TokenRows
    train_labels: np.ndarray
    val_sequences: np.ndarray
    val_labels: np.ndarray
    test_sequences: np.ndarray
    test_labels: np.ndarray
    train_jet_pt: np.ndarray | None = None
    val_jet_pt: np.ndarray | None = None
    test_jet_pt: np.ndarray | None = None

    def __post_init__(self):
        for part in ("train", "val", "test"):
            sequences, labels = getattr(self, f"{part}_sequences"), getattr(self, f"{part}_labels")
            if len(sequences) != len(labels):
                msg = f"{part}: {len(sequences)} sequences but {len(labels)} labels"
                raise ValueError(msg)
            jet_pt = getattr(self, f"{part}_jet_pt")
            if jet_pt is not None and len(jet_pt) != len(labels):
                msg = f"{part}: {len(sequences)} sequences but {len(jet_pt)} jet pT values"
                raise ValueError(msg)
            if set(np.unique(labels).tolist()) != {0, 1}:
                msg = f"{part} labels must hold both classes 0 and 1, got {np.unique(labels).tolist()}"
                raise ValueError(msg)

    def training_subset(self, size: int, seed: int) -> np.ndarray:
        """``size`` indices into the training pool, half of each class (the odd one signal), drawn by ``seed``."""
        by_class = [np.flatnonzero(self.train_labels == c) for c in (0, 1)]
        wanted = (size // 2, size - size // 2)
        if any(n > len(pool) for n, pool in zip(wanted, by_class)):
            msg = f"training size {size} needs {wanted} jets of classes (0, 1); the pool holds {[len(p) for p in by_class]}"
            raise ValueError(msg)
        rng = np.random.default_rng([seed, size])
        return np.sort(np.concatenate([rng.choice(pool, n, replace=False) for n, pool in zip(wanted, by_class)]))


def tagging_step(model: TokenClassifier, batch: tuple[Tensor, ...]) -> StepOutput:
    """Cross-entropy of one ``(sequences, labels)`` (or ``(sequences, jet_pt, labels)``) batch, with its accuracy."""
    sequences, *jet_pt, labels = batch
    logits = model(sequences, *jet_pt)
    accuracy = (logits.argmax(dim=-1) == labels).float().mean().item()
    return StepOutput(F.cross_entropy(logits, labels), {"accuracy": accuracy})


@torch.no_grad()
def predict_scores(
    model: TokenClassifier, sequences: np.ndarray, jet_pt: np.ndarray | None = None, *, batch_size: int = 256
) -> np.ndarray:
    """Signal probability of each sequence, batched by length (less padding), in the input order.

    ``jet_pt`` [GeV] per sequence for a backbone conditioned on it.
    """
    model.eval()
    device = next(model.parameters()).device
    sequences = torch.as_tensor(sequences, dtype=torch.long)
    jet_pt = _jet_pt_input(model.config.gpt, jet_pt)
    order = (sequences != PAD).sum(dim=1).argsort()
    scores = torch.empty(len(sequences))
    for idx in order.split(batch_size):
        extra = () if jet_pt is None else (jet_pt[idx].to(device),)
        scores[idx] = model(sequences[idx].to(device), *extra).softmax(dim=-1)[:, 1].cpu()
    return scores.numpy()


def _jet_pt_input(config, jet_pt) -> torch.Tensor | None:
    """The jet pT as the classifier reads it: a tensor for a pT-conditioned backbone, else None."""
    if not config.jet_pt_edges:
        return None
    if jet_pt is None:
        msg = "the backbone is conditioned on the jet pT (GPTConfig.jet_pt_edges): give the jets' jet_pt"
        raise ValueError(msg)
    return torch.as_tensor(np.asarray(jet_pt, dtype=np.float32))


def train_tagger(
    data: TaggingData,
    config: TokenClassifierConfig,
    *,
    size: int,
    strategy: str,
    seed: int,
    pretrained: str | os.PathLike | None,
    training: TrainingConfig,
    run_dir: str | os.PathLike,
    progress: bool = True,
) -> dict:
    """Train one cell of the scan and score it on the test set; returns its result row.

    ``training`` gives epochs (the most), batch size, learning rate, weight decay and
    device; seed and patience are the cell's.
    """
    start = time.perf_counter()
    subset = data.training_subset(size, seed)
    cell_training = TrainingConfig(**{**asdict(training), "seed": seed, "patience": patience_for(size)})
    model, optimizer, loaded = build_tagger(
        config, strategy, pretrained=pretrained, seed=seed,
        learning_rate=cell_training.learning_rate, weight_decay=cell_training.weight_decay,
    )  # fmt: skip

    def tensors(sequences, jet_pt, labels):  # (sequences, [jet_pt,] labels), as tagging_step reads them
        jet_pt = _jet_pt_input(config.gpt, jet_pt)
        extra = () if jet_pt is None else (jet_pt,)
        return torch.as_tensor(sequences, dtype=torch.long), *extra, torch.as_tensor(labels, dtype=torch.long)

    train_jet_pt = None if data.train_jet_pt is None else np.asarray(data.train_jet_pt)[subset]
    train_part = tensors(data.train_sequences[subset], train_jet_pt, data.train_labels[subset])
    val_part = tensors(data.val_sequences, data.val_jet_pt, data.val_labels)
    result = train(
        model, train_part, val_part, tagging_step, cell_training, run_dir,
        optimizer=optimizer, progress=progress, lengths=(train_part[0] != PAD).sum(dim=1),
        describe={"classifier": "TokenClassifier", "config": asdict(config), "strategy": strategy,
                  "pretrained": str(pretrained or ""), "loaded": loaded, "size": size},
    )  # fmt: skip
    model.load_state_dict(load_checkpoint(result.best_checkpoint)["model"])
    model.to(pick_device(training.device))
    scores = predict_scores(model, data.test_sequences, data.test_jet_pt, batch_size=max(256, training.batch_size))
    return {
        "size": size, "strategy": strategy, "seed": seed,
        **tagging_metrics(data.test_labels, scores),
        "best_epoch": result.best_epoch, "epochs_trained": len(result.history),
        "seconds": time.perf_counter() - start,
    }  # fmt: skip


def _read_results(path: Path) -> list[dict]:
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    types = {"size": int, "seed": int, "best_epoch": int, "epochs_trained": int, "strategy": str}
    return [{k: types.get(k, float)(v) for k, v in row.items()} for row in rows]


def _write_results(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def run_scan(
    data: TaggingData,
    config: TokenClassifierConfig,
    *,
    sizes: list[int],
    strategies: list[str],
    seeds: list[int],
    pretrained: str | os.PathLike | None,
    training: TrainingConfig,
    scan_dir: str | os.PathLike,
    progress: bool = True,
) -> list[dict]:
    """Train every (size, strategy, seed) cell not yet in ``scan_dir/results.csv``; return all rows.

    The scan's settings (classifier config, training, data sizes, pretrained
    checkpoint and its digest) are kept in ``scan_dir/scan.json``; continuing a
    scan with other settings is refused rather than mixed into one table.
    """
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        msg = f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}"
        raise ValueError(msg)
    # Under torchrun every cell trains data-parallel over all processes; rank 0 alone writes the scan's files.
    processes = join_processes()
    scan_dir = Path(scan_dir)
    scan_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "config": asdict(config),
        "training": {k: v for k, v in asdict(training).items() if k not in ("device", "checkpoint_every", "epochs")},
        "n_train_pool": len(data.train_labels), "n_val": len(data.val_labels), "n_test": len(data.test_labels),
        "pretrained": str(pretrained or ""),
        "pretrained_digest": file_digest(pretrained, length=64) if pretrained else "",
    }  # fmt: skip
    settings_path = scan_dir / "scan.json"
    if settings_path.exists():
        stored = json.loads(settings_path.read_text())
        if stored != json.loads(json.dumps(settings)):
            differ = sorted(k for k in settings if stored.get(k) != json.loads(json.dumps(settings[k])))
            msg = f"{scan_dir} holds a scan with other settings ({', '.join(differ)}); choose another scan_dir"
            raise ValueError(msg)
    elif processes.main:
        with atomic_path(settings_path) as tmp:
            Path(tmp).write_text(json.dumps(settings, indent=2))
    processes.wait_for_main()  # every process has read the results before rank 0 writes them again

    results_path = scan_dir / "results.csv"
    rows = _read_results(results_path) if results_path.exists() else []
    done = {(r["size"], r["strategy"], r["seed"]) for r in rows}
    cells = [(n, s, seed) for n in sizes for s in strategies for seed in seeds]
    todo = [cell for cell in cells if cell not in done]
    progress = progress and processes.main
    if progress and len(todo) < len(cells):
        print(f"{scan_dir}: {len(cells) - len(todo)} of {len(cells)} cells done; continuing")
    for size, strategy, seed in tqdm(todo, desc="scan", unit="cell", disable=not progress):
        row = train_tagger(
            data, config, size=size, strategy=strategy, seed=seed, pretrained=pretrained, training=training,
            run_dir=scan_dir / f"{strategy}_n{size}_seed{seed}", progress=False,
        )  # fmt: skip
        rows.append(row)
        if processes.main:
            _write_results(rows, results_path)
    processes.wait_for_main()
    return rows
