"""Data-parallel training under torchrun, on CPU with the gloo backend: two processes of tests/distributed_run.py."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from omnijet_lib.checkpoints import load_checkpoint

SCRIPT = Path(__file__).with_name("distributed_run.py")
PROJECT = SCRIPT.parents[1]


def run(run_dir: Path, *args: str, processes: int = 2) -> subprocess.CompletedProcess:
    # One thread per process: two processes share the 2 cores of a laptop or CI runner.
    # Faulthandler: a process that dies of a signal (a C++ abort) prints where its threads were.
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT), "PYTHONFAULTHANDLER": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    command = (launcher if processes > 1 else [sys.executable]) + [str(SCRIPT), str(run_dir), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> dict:
    """The final checkpoint of an uninterrupted run of 2 processes with batch size 8."""
    run_dir = tmp_path_factory.mktemp("distributed") / "two"
    done = run(run_dir, "--batch-size", "8")
    assert done.returncode == 0, done.stderr
    return load_checkpoint(run_dir / "last.pt")


def test_two_processes_train_as_one_process_with_twice_the_batch(two_processes, tmp_path):
    done = run(tmp_path / "one", "--batch-size", "16", processes=1)
    assert done.returncode == 0, done.stderr
    one = load_checkpoint(tmp_path / "one" / "last.pt")
    # 97 samples: 7 steps per epoch in both runs, the last with one sample on rank 0 and none on rank 1
    assert one["global_step"] == two_processes["global_step"] == 3 * 7
    for name, weight in one["model"].items():
        torch.testing.assert_close(two_processes["model"][name], weight, rtol=1e-5, atol=1e-6)
    for a, b in zip(without_seconds(one["history"]), without_seconds(two_processes["history"])):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-5), key
    assert len(two_processes["process_rngs"]) == 2  # each rank's RNG, for an exact resume
    assert one["history"][-1]["val_loss"] < 0.5 * one["history"][0]["val_loss"]  # it did learn


def test_resumes_exactly_after_kill_9_of_one_rank(two_processes, tmp_path):
    run_dir, marker = tmp_path / "killed", tmp_path / "killed_once"
    kill = ["--batch-size", "8", "--kill-at-step", "9", "--kill-marker", str(marker)]
    killed = run(run_dir, *kill)
    assert killed.returncode != 0 and marker.exists()
    assert 0 < load_checkpoint(run_dir / "last.pt")["global_step"] < two_processes["global_step"]

    # a run of another number of processes does not continue it
    alone = run(run_dir, "--batch-size", "8", processes=1)
    assert alone.returncode != 0
    assert "written by 2 training process(es), and 1 would continue it" in alone.stderr

    resumed = run(run_dir, *kill)
    assert resumed.returncode == 0, resumed.stderr
    final = load_checkpoint(run_dir / "last.pt")
    for name, weight in two_processes["model"].items():
        assert torch.equal(final["model"][name], weight), name
    assert without_seconds(final["history"]) == without_seconds(two_processes["history"])


def test_a_vq_vae_keeps_one_codebook_on_every_process(tmp_path):
    """k-means and dead-code replacement draw from each process's own vectors; the codebook stays one."""
    done = run(tmp_path / "vqvae", "--vqvae", "--batch-size", "8")
    assert done.returncode == 0, done.stderr
    codebooks = [torch.load(tmp_path / "vqvae" / f"codebook_rank{rank}.pt") for rank in (0, 1)]
    assert torch.equal(*codebooks)
    assert load_checkpoint(tmp_path / "vqvae" / "last.pt")["model"]["quantizer.batches_seen"] == 2 * 4


def test_processes_that_disagree_on_the_config_are_refused(tmp_path):
    done = run(tmp_path / "disagree", "--batch-size", "8", "--learning-rate-on-rank-1", "0.02")
    assert done.returncode != 0
    assert "the training processes disagree on the run" in done.stderr
    assert "training_config.learning_rate: 0.05 on rank 0, 0.02 on rank 1" in done.stderr
    assert not (tmp_path / "disagree" / "last.pt").exists()
