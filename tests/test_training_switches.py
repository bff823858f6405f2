"""The training loop's switches for GPUs, exercised on a CPU: mixed precision, torch.compile, TF32."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from omnijet_lib.checkpoints import load_checkpoint
from omnijet_lib.training import StepOutput, TrainingConfig, train

g = torch.Generator().manual_seed(0)
X = torch.randn(96, 3, generator=g)
Y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(96, generator=g)
TRAIN, VAL = (X[:64], Y[:64]), (X[64:], Y[64:])


def config(**changes) -> TrainingConfig:
    return TrainingConfig(**{"epochs": 3, "batch_size": 16, "learning_rate": 1e-2, "device": "cpu"} | changes)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))


def mse(net: nn.Module, batch) -> StepOutput:
    x, y = batch
    return StepOutput(F.mse_loss(net(x).squeeze(-1).float(), y), {})


def test_bf16_runs_every_forward_pass_in_bfloat16_and_learns(tmp_path):
    seen = []

    def recording_mse(net, batch):
        seen.append((net.training, net(batch[0]).dtype))
        return mse(net, batch)

    longer = {"epochs": 8, "learning_rate": 3e-2}
    result = train(
        model(), TRAIN, VAL, recording_mse, config(precision="bf16", **longer), tmp_path / "bf16", progress=False
    )
    assert {dtype for _, dtype in seen} == {torch.bfloat16}
    assert {training for training, _ in seen} == {True, False}  # training and validation steps alike
    fp32 = train(model(), TRAIN, VAL, mse, config(**longer), tmp_path / "fp32", progress=False)
    assert result.history[-1]["val_loss"] < 0.5 * result.history[0]["val_loss"]  # it learns, about as fp32 does
    assert result.history[-1]["val_loss"] == pytest.approx(fp32.history[-1]["val_loss"], rel=0.1)


def test_fp16_keeps_its_gradient_scale_in_the_checkpoint_and_resumes_exactly(tmp_path):
    fp16 = config(precision="fp16", checkpoint_every=3)
    whole, whole_result = model(), None
    whole_result = train(whole, TRAIN, VAL, mse, fp16, tmp_path / "whole", progress=False)
    checkpoint = load_checkpoint(tmp_path / "whole" / "last.pt")
    assert checkpoint["grad_scaler"]["scale"] > 1  # fp16 scales the loss up before backward

    def interrupt(step: int) -> None:
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(model(), TRAIN, VAL, mse, fp16, tmp_path / "resumed", progress=False, on_step=interrupt)
    resumed = model()
    resumed_result = train(resumed, TRAIN, VAL, mse, fp16, tmp_path / "resumed", progress=False)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["val_loss"] for r in whole_result.history] == [r["val_loss"] for r in resumed_result.history]


# torch.compile's own imports touch torch.jit (torch's warning, not ours)
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_training_matches_eager_training(tmp_path):
    eager, compiled = model(), model()
    train(eager, TRAIN, VAL, mse, config(epochs=2), tmp_path / "eager", progress=False)
    result = train(compiled, TRAIN, VAL, mse, config(epochs=2, compile=True), tmp_path / "compiled", progress=False)
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    # compile and tf32 change nothing but speed and rounding: a run may continue with them switched
    again = train(compiled, TRAIN, VAL, mse, config(epochs=3, tf32=True), tmp_path / "compiled", progress=False)
    assert len(again.history) == len(result.history) + 1


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [("precision", "fp8", "precision='fp8' (must be one of"), ("compile", 1, "compile=1 (must be True or False)")],
)
def test_a_bad_switch_is_refused_by_name(field, value, says):
    with pytest.raises(ValueError, match=r"invalid TrainingConfig") as err:
        TrainingConfig(**{field: value})
    assert says in str(err.value)


def test_precision_may_not_change_when_a_run_resumes(tmp_path):
    train(model(), TRAIN, VAL, mse, config(epochs=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="precision: 'fp32' in the checkpoint, 'bf16' given"):
        train(model(), TRAIN, VAL, mse, config(epochs=2, precision="bf16"), tmp_path, progress=False)
