"""The training loop: learning, checkpoints, exact resume after Ctrl-C and kill -9, early stopping."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import Killed, stop_at
from torch import nn

from omnijet_lib.atomic import save_atomic
from omnijet_lib.checkpoints import load_checkpoint
from omnijet_lib.devices import pick_device
from omnijet_lib.training import StepOutput, TrainingConfig, epoch_batches, learning_rate_factor, train

BATCH_SIZE = 16
N_BATCHES = 5  # 72 training samples: four full batches and one of 8


class TinyMLP(nn.Module):
    """Regression with dropout, so that a resumed run is only exact if torch's RNG state is restored."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)  # (B,)


def mse(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> StepOutput:
    x, y = batch
    pred = model(x)
    return StepOutput(F.mse_loss(pred, y), {"mae": (pred - y).abs().mean().item()})


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(n, generator=g)
    return x, y


TRAIN, VAL = make_data(72, 1), make_data(32, 2)


def config(**changes) -> TrainingConfig:
    return TrainingConfig(**{"epochs": 3, "batch_size": BATCH_SIZE, "learning_rate": 1e-2, "device": "cpu"} | changes)


def run(
    run_dir: Path, cfg: TrainingConfig | None = None, *, progress: bool = False, **kwargs
) -> tuple[nn.Module, object]:
    torch.manual_seed(123)  # the same initial weights every time (a resumed run overwrites them anyway)
    model = TinyMLP()
    result = train(model, TRAIN, VAL, mse, cfg or config(), run_dir, progress=progress, **kwargs)
    return model, result


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def assert_same_run(a, b) -> None:
    (model_a, result_a), (model_b, result_b) = a, b
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name
    assert without_seconds(result_a.history) == without_seconds(result_b.history)
    assert (result_a.best_epoch, result_a.best_val_loss) == (result_b.best_epoch, result_b.best_val_loss)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of 3 epochs."""
    return run(tmp_path_factory.mktemp("reference"))


def val_loss(model: nn.Module) -> float:
    model.eval()
    with torch.no_grad():
        return F.mse_loss(model(VAL[0]), VAL[1]).item()


def test_learns_and_keeps_the_best_epoch(tmp_path):
    describe = {"kind": "tiny-mlp", "hidden": 16, "scale": torch.tensor([1.0, 2.0])}
    torch.manual_seed(123)
    model = TinyMLP()
    cfg = config(epochs=6)
    result = train(model, TRAIN, VAL, mse, cfg, tmp_path, describe=describe, progress=True)

    history = result.history
    assert len(history) == 6 and [r["epoch"] for r in history] == list(range(6))
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 2
    assert history[-1]["val_loss"] < history[0]["val_loss"] / 2
    assert {"train_mae", "val_mae", "lr", "seconds", "global_step"} <= history[0].keys()
    assert history[-1]["global_step"] == 6 * N_BATCHES
    assert json.loads((tmp_path / "history.json").read_text()) == history

    assert result.best_val_loss == min(r["val_loss"] for r in history)
    assert history[result.best_epoch]["val_loss"] == result.best_val_loss
    best = load_checkpoint(result.best_checkpoint)
    assert best["best_epoch"] == result.best_epoch and best["epoch"] == result.best_epoch + 1
    assert best["training_config"] == asdict(cfg)
    assert best["describe"]["kind"] == "tiny-mlp" and torch.equal(best["describe"]["scale"], describe["scale"])
    # The stored weights reproduce the recorded validation losses (the whole set fits in 2 batches of 16).
    model.load_state_dict(best["model"])
    assert val_loss(model) == pytest.approx(result.best_val_loss, rel=1e-5)
    model.load_state_dict(load_checkpoint(result.last_checkpoint)["model"])
    assert val_loss(model) == pytest.approx(history[-1]["val_loss"], rel=1e-5)


@pytest.mark.parametrize(
    "step",
    [1, 7, N_BATCHES * 2, N_BATCHES * 3],
    ids=["first-step", "mid-epoch", "epoch-boundary", "last-step"],
)
def test_interrupted_and_resumed_is_exact(tmp_path, reference, step):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, on_step=stop_at(step))
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["global_step"] == step
    assert (saved["epoch"], saved["step_in_epoch"]) == ((step - 1) // N_BATCHES, (step - 1) % N_BATCHES + 1)
    assert_same_run(run(tmp_path), reference)


def test_interrupted_at_the_epoch_end_is_exact(tmp_path):
    """Ctrl-C during the end-of-epoch evaluation; evaluate draws from torch's RNG, as a sampler would."""

    def evaluate(model):
        return {"noise": torch.rand(()).item()}

    def evaluate_interrupted_once(model):
        if evaluate_interrupted_once.calls == 1:
            evaluate_interrupted_once.calls += 1
            raise KeyboardInterrupt
        evaluate_interrupted_once.calls += 1
        return evaluate(model)

    evaluate_interrupted_once.calls = 0
    reference = run(tmp_path / "reference", evaluate=evaluate)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "run", evaluate=evaluate_interrupted_once)
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (saved["epoch"], saved["step_in_epoch"], len(saved["history"])) == (1, N_BATCHES, 1)
    assert_same_run(run(tmp_path / "run", evaluate=evaluate_interrupted_once), reference)
    assert "noise" in reference[1].history[0]


@pytest.mark.parametrize(("checkpoint_every", "killed_at", "saved_at"), [(3, 8, 6), (200, 7, N_BATCHES)])
def test_resume_from_an_older_checkpoint_is_exact(tmp_path, reference, checkpoint_every, killed_at, saved_at):
    with pytest.raises(Killed):
        run(tmp_path, config(checkpoint_every=checkpoint_every), on_step=stop_at(killed_at, Killed))
    assert load_checkpoint(tmp_path / "last.pt")["global_step"] == saved_at
    # checkpoint_every may change between a run and its resumption
    assert_same_run(run(tmp_path, config(checkpoint_every=4)), reference)


def test_finished_run_returns_at_once_and_more_epochs_continue(tmp_path):
    two = run(tmp_path / "run", config(epochs=2))
    again = run(tmp_path / "run", config(epochs=2), on_step=stop_at(1, AssertionError))
    assert again[1].history == two[1].history  # seconds too: nothing was rerun
    assert_same_run(again, two)  # the model holds the run's last weights

    four = run(tmp_path / "reference", config(epochs=4))
    assert_same_run(run(tmp_path / "run", config(epochs=4)), four)


def test_changed_config_is_refused(tmp_path):
    run(tmp_path, config(epochs=1))
    with pytest.raises(ValueError, match=r"learning_rate: 0\.01 in the checkpoint, 0\.1 given") as error:
        run(tmp_path, config(epochs=1, learning_rate=0.1))
    assert "choose another run_dir" in str(error.value) and "seed" not in str(error.value)


def test_changed_model_description_is_refused(tmp_path):
    """Weights of the same shapes would load: a finished run would come back as if trained with another loss."""
    describe = {"kind": "tiny", "config": {"alpha": 10.0, "sizes": (4, 8)}, "table": torch.arange(3)}
    first = run(tmp_path, config(epochs=1), describe=describe)
    same = {"kind": "tiny", "config": {"alpha": 10.0, "sizes": (4, 8)}, "table": torch.arange(3)}
    assert run(tmp_path, config(epochs=1), describe=same)[1].history == first[1].history  # equal, not identical
    changed = {**same, "config": {"alpha": 2.0, "sizes": (4, 8)}, "extra": "v2"}
    with pytest.raises(ValueError, match="another model or loss") as error:
        run(tmp_path, config(epochs=2), describe=changed)
    assert "config.alpha: 10.0 in the checkpoint, 2.0 given" in str(error.value)
    assert "extra: '(absent)' in the checkpoint, 'v2' given" in str(error.value)
    assert "sizes" not in str(error.value) and "table" not in str(error.value)
    with pytest.raises(ValueError, match="table"):
        run(tmp_path, config(epochs=2), describe={**same, "table": torch.arange(4)})


def test_a_run_saved_before_newer_config_fields_resumes(tmp_path):
    """A checkpoint without best_by / lr_schedule (older code) ran at their defaults: it continues."""
    run(tmp_path, config(epochs=1))
    saved = load_checkpoint(tmp_path / "last.pt")
    for name in ("best_by", "lr_schedule", "warmup"):
        del saved["training_config"][name]
    save_atomic(saved, tmp_path / "last.pt")
    assert len(run(tmp_path, config(epochs=2))[1].history) == 2
    with pytest.raises(ValueError, match="lr_schedule: 'constant' in the checkpoint, 'cosine' given"):
        run(tmp_path, config(epochs=3, lr_schedule="cosine"))


def test_a_run_dir_reused_with_other_data_is_refused(tmp_path):
    """Say notebook 04 reruns at another temperature: its classifier test must not come back trained on the old sample."""
    model = TinyMLP()
    train(model, TRAIN, VAL, mse, config(epochs=1), tmp_path, progress=False)
    train(model, TRAIN, VAL, mse, config(epochs=1), tmp_path, progress=False)  # the same data: returned
    other_train = (TRAIN[0].clone(), TRAIN[1].clone())
    other_train[0][40, 1] += 1.0  # one value of one row
    for train_data, val_data in ((other_train, VAL), (TRAIN, make_data(32, 3)), ((TRAIN[0][:-1], TRAIN[1][:-1]), VAL)):
        with pytest.raises(ValueError, match="run on other data"):
            train(model, train_data, val_data, mse, config(epochs=2), tmp_path, progress=False)
    # A checkpoint written before runs recorded their data is taken at its word.
    saved = load_checkpoint(tmp_path / "last.pt")
    del saved["describe"]["data_fingerprint"]
    save_atomic(saved, tmp_path / "last.pt")
    assert len(train(model, other_train, VAL, mse, config(epochs=2), tmp_path, progress=False).history) == 2


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="a directory"):
        load_checkpoint(tmp_path)
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt"):
        load_checkpoint(tmp_path / "garbage.pt")
    save_atomic({"model": {}}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="partial.pt(.|\n)*missing keys: optimizer"):
        load_checkpoint(tmp_path / "partial.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.pt", "partial.pt"]  # no temporaries left


def test_describe_must_load_with_weights_only(tmp_path):
    with pytest.raises(ValueError, match="describe(.|\n)*PosixPath"):
        run(tmp_path, describe={"data": Path("data/jets.h5")})


def test_nan_loss_stops_without_saving(tmp_path):
    calls = 0

    def nan_at_step_8(model, batch):
        nonlocal calls
        out = mse(model, batch)
        if model.training:
            calls += 1
            if calls == 8:
                return StepOutput(out.loss * float("nan"), out.metrics)
        return out

    torch.manual_seed(123)
    with pytest.raises(FloatingPointError, match="epoch 1 step 2"):
        train(TinyMLP(), TRAIN, VAL, nan_at_step_8, config(checkpoint_every=1), tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "last.pt")["global_step"] == 7


def test_early_stopping(tmp_path):
    # learning_rate 0: the weights never change, so no epoch after the first improves on it.
    stopped = run(tmp_path, config(epochs=10, learning_rate=0.0, patience=2))[1]
    assert len(stopped.history) == 3 and stopped.best_epoch == 0
    assert load_checkpoint(tmp_path / "last.pt")["stopped_early"]
    again = run(tmp_path, config(epochs=20, learning_rate=0.0, patience=2), on_step=stop_at(1, AssertionError))[1]
    assert again.history == stopped.history


def bar_lines(err: str) -> list[tuple[str, str]]:
    """(description, the rest) of every line tqdm drew into ``err``: outside a notebook it redraws with \\r."""
    lines = (re.match(r"(.+?): +\d+%\|(.*)", line) for line in re.split(r"[\r\n]+", err))
    return [m.groups() for m in lines if m]


def test_progress_is_one_bar_per_run(tmp_path, capsys):
    run(tmp_path, describe={"kind": "tiny-mlp"}, progress=True)
    lines = bar_lines(capsys.readouterr().err)
    assert {desc for desc, _ in lines} == {f"tiny-mlp {tmp_path}"}  # not one bar per epoch
    last = lines[-1][1]
    assert f"| {3 * N_BATCHES}/{3 * N_BATCHES} " in last
    assert "epoch=3/3" in last and "loss=" in last and "val_loss=" in last


def test_progress_bar_of_a_resumed_run_starts_where_it_stopped(tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, on_step=stop_at(7), progress=True)
    capsys.readouterr()
    run(tmp_path, progress=True)
    lines = bar_lines(capsys.readouterr().err)
    assert {desc for desc, _ in lines} == {f"TinyMLP {tmp_path}"}  # no describe: the model's class
    assert f"| 7/{3 * N_BATCHES} " in lines[0][1]
    assert f"| {3 * N_BATCHES}/{3 * N_BATCHES} " in lines[-1][1]


def test_progress_bar_ends_full_on_early_stopping(tmp_path, capsys):
    run(tmp_path, config(epochs=10, learning_rate=0.0, patience=2), progress=True)
    out, err = capsys.readouterr()
    assert "early stopping" in out
    assert f"| {3 * N_BATCHES}/{3 * N_BATCHES} " in bar_lines(err)[-1][1]  # 3 of 10 epochs, shown as done


def test_best_epoch_by_a_chosen_metric(tmp_path):
    def mse_and_its_negative(model, batch):  # a metric that is best where the loss is worst
        out = mse(model, batch)
        return StepOutput(out.loss, {"negative_mse": -out.loss.item()})

    torch.manual_seed(123)
    cfg = config(epochs=6, best_by="negative_mse")
    result = train(TinyMLP(), TRAIN, VAL, mse_and_its_negative, cfg, tmp_path, progress=False)
    scores = [r["val_negative_mse"] for r in result.history]
    losses = [r["val_loss"] for r in result.history]
    assert result.best_epoch == scores.index(min(scores)) and result.best_val_loss == min(scores)
    assert result.best_epoch != losses.index(min(losses))  # not what the loss would have picked
    assert load_checkpoint(result.best_checkpoint)["best_epoch"] == result.best_epoch


def test_best_epoch_by_a_number_evaluate_returns(tmp_path):
    """best_by may name what evaluate measures (e.g. on a generated sample), not only a validation number."""
    calls = []

    def worse_each_epoch(model):  # best at the first epoch, where the loss is worst
        calls.append(1)
        return {"sample_distance": float(len(calls))}

    result = run(tmp_path / "ok", config(epochs=3, best_by="sample_distance"), evaluate=worse_each_epoch)[1]
    assert [r["sample_distance"] for r in result.history] == [1.0, 2.0, 3.0]
    assert result.best_epoch == 0 and result.best_val_loss == 1.0
    with pytest.raises(ValueError, match="best_by='nope' is neither a validation number nor one evaluate returned"):
        run(tmp_path / "bad", config(epochs=1, best_by="nope"), evaluate=worse_each_epoch)


def test_cosine_schedule_falls_to_zero_and_resumes_exactly(tmp_path):
    cfg = config(lr_schedule="cosine")
    reference = run(tmp_path / "reference", cfg)
    lrs = [r["lr"] for r in reference[1].history]  # the rate of each epoch's last step
    steps = 3 * N_BATCHES
    expected = [1e-2 * 0.5 * (1 + math.cos(math.pi * (k * N_BATCHES - 1) / steps)) for k in (1, 2, 3)]
    assert lrs == pytest.approx(expected)
    assert lrs[0] > lrs[1] > lrs[2] > 0
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed", cfg, on_step=stop_at(7))
    assert_same_run(run(tmp_path / "resumed", cfg), reference)
    with pytest.raises(ValueError, match="another training config"):
        run(tmp_path / "resumed", config())  # the constant-rate run would compute something else


def test_warmup_rises_linearly_then_follows_the_schedule(tmp_path):
    constant, cosine = config(warmup=0.2), config(lr_schedule="cosine", warmup=0.2)
    assert [learning_rate_factor(constant, p) for p in (0.0, 0.1, 0.2, 0.6, 1.0)] == pytest.approx([0, 0.5, 1, 1, 1])
    assert [learning_rate_factor(cosine, p) for p in (0.1, 0.2, 0.6, 1.0)] == pytest.approx([0.5, 1, 0.5, 0])
    assert learning_rate_factor(config(lr_schedule="cosine"), 0.5) == pytest.approx(0.5)  # no warm-up: as before
    # in a run: each epoch's last step (5, 10, 15 of 15) at its rate, and a resumed run follows it exactly
    reference = run(tmp_path / "reference", cosine)
    steps = 3 * N_BATCHES
    expected = [1e-2 * learning_rate_factor(cosine, (k * N_BATCHES - 1) / steps) for k in (1, 2, 3)]
    assert [r["lr"] for r in reference[1].history] == pytest.approx(expected)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed", cosine, on_step=stop_at(2))  # inside the warm-up
    assert_same_run(run(tmp_path / "resumed", cosine), reference)
    with pytest.raises(ValueError, match="warmup"):
        TrainingConfig(warmup=1.0)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="epochs=0"):
        TrainingConfig(epochs=0)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainingConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="best_by='accuracy'.*'mae'"):
        train(TinyMLP(), TRAIN, VAL, mse, config(best_by="accuracy"), tmp_path / "bad", progress=False)
    with pytest.raises(ValueError, match="patience"):
        TrainingConfig(patience=0)
    with pytest.raises(ValueError, match="train_data must be a tuple"):
        train(TinyMLP(), TRAIN[0], VAL, mse, config(), tmp_path, progress=False)
    with pytest.raises(ValueError, match="first"):
        train(TinyMLP(), (TRAIN[0], VAL[1]), VAL, mse, config(), tmp_path, progress=False)


class Rows:
    """A row source over a tensor, counting its reads: stands for samples read from a file."""

    def __init__(self, tensor: torch.Tensor, *, as_numpy: bool = False):
        self.tensor, self.as_numpy, self.reads = tensor, as_numpy, 0

    def __len__(self) -> int:
        return len(self.tensor)

    def __getitem__(self, index):
        self.reads += 1
        rows = self.tensor[index].clone()
        return rows.numpy() if self.as_numpy else rows


def test_row_sources_train_exactly_like_tensors(tmp_path, reference):
    sources = [Rows(TRAIN[0]), TRAIN[1]], (Rows(VAL[0]), Rows(VAL[1]))
    torch.manual_seed(123)
    model = TinyMLP()
    result = train(model, sources[0], sources[1], mse, config(), tmp_path, progress=False)
    assert_same_run(reference, (model, result))
    assert sources[0][0].reads == 3 * N_BATCHES + 1  # a batch at a time, and once the rows of the data's fingerprint


def test_row_sources_are_checked(tmp_path):
    with pytest.raises(ValueError, match="tuple of tensors or row sources.*got ndarray"):
        train(TinyMLP(), (TRAIN[0].numpy(), TRAIN[1]), VAL, mse, config(), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"first.*\[\(72, 3\), Rows of 32\]"):
        train(TinyMLP(), (TRAIN[0], Rows(VAL[1])), VAL, mse, config(), tmp_path, progress=False)
    with pytest.raises(TypeError, match="must return tensors; Rows.* returned ndarray"):
        train(TinyMLP(), (Rows(TRAIN[0], as_numpy=True), TRAIN[1]), VAL, mse, config(), tmp_path, progress=False)


def test_epoch_batches_by_length_group_similar_samples():
    lengths = torch.randint(1, 200, (1000,), generator=torch.Generator().manual_seed(0))
    batches = epoch_batches(1000, 10, seed=0, epoch=2, lengths=lengths)
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(1000)), "every sample once"
    assert all(torch.equal(a, b) for a, b in zip(batches, epoch_batches(1000, 10, seed=0, epoch=2, lengths=lengths)))
    spread = torch.tensor([float(lengths[b].max() - lengths[b].min()) for b in batches])
    random_spread = torch.tensor([float(lengths[b].max() - lengths[b].min()) for b in epoch_batches(1000, 10, 0, 2)])
    assert spread.mean() < 0.2 * random_spread.mean()
    first_lengths = [float(lengths[b].float().mean()) for b in batches[:20]]
    assert first_lengths != sorted(first_lengths), "the batches themselves come in random order"
    with pytest.raises(ValueError, match="lengths"):
        epoch_batches(999, 10, seed=0, epoch=0, lengths=lengths)


def test_epoch_batches_cover_every_sample_once():
    batches = epoch_batches(37, 8, seed=0, epoch=3)
    assert [len(b) for b in batches] == [8, 8, 8, 8, 5]  # the last partial batch is kept
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(37))
    assert all(torch.equal(a, b) for a, b in zip(batches, epoch_batches(37, 8, seed=0, epoch=3)))
    assert not torch.equal(torch.cat(batches), torch.cat(epoch_batches(37, 8, seed=0, epoch=4)))
    assert not torch.equal(torch.cat(batches), torch.cat(epoch_batches(37, 8, seed=1, epoch=3)))

    shards = [epoch_batches(37, 4, seed=0, epoch=3, rank=r, world_size=2) for r in range(2)]
    rank0, rank1 = (set(torch.cat(s).tolist()) for s in shards)
    assert not rank0 & rank1 and rank0 | rank1 == set(range(37))
    # batch j of both ranks together is batch j of one process with twice the batch size
    single = epoch_batches(37, 8, seed=0, epoch=3)
    assert set(shards[0][0].tolist()) | set(shards[1][0].tolist()) == set(single[0].tolist())
    with pytest.raises(ValueError, match="rank"):
        epoch_batches(37, 4, seed=0, epoch=0, rank=2, world_size=2)


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="an accelerator is present")
def test_pick_device():
    assert pick_device("auto") == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not available(.|\n)*'cpu'"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        pick_device("tpu")
