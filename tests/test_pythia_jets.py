"""Real Pythia 8 + FastJet jets: physics sanity, reproducibility, resuming after a kill."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from omnijet_lib.data.jet_files import jet_file_info, read_jets
from omnijet_lib.data.jets import label_index
from omnijet_lib.data.pythia_jets import generate_chunk, generate_jet_file, generate_jets
from omnijet_lib.observables import jet_observables

pytestmark = pytest.mark.slow


def test_top_and_qcd_jets_are_physical(pythia_jets):
    top, qcd = pythia_jets["top"], pythia_jets["qcd"]
    obs = {p: jet_observables(j.constituents) for p, j in pythia_jets.items()}
    in_window = {p: np.mean((o["mass"] > 140) & (o["mass"] < 200)) for p, o in obs.items()}
    assert in_window["top"] > 0.7  # docs/jets.md: 85% of top jets
    assert in_window["qcd"] < 0.25  # and 12.5% of QCD jets
    assert obs["top"]["tau32"].mean() < obs["qcd"]["tau32"].mean() - 0.15  # three prongs vs one
    for jets in (top, qcd):
        assert np.all((jets.pt > 500) & (jets.pt < 1000) & (np.abs(jets.eta) < 2))
        assert np.all(jets.n_constituents > 0)
        np.testing.assert_allclose(obs["top" if jets is top else "qcd"]["pt"], jets.pt, rtol=1e-3)
    assert np.all(top.label == label_index("Tbqq")) and np.all(qcd.label == label_index("QCD"))
    charges = np.concatenate([j.flat_constituents()["charge"] for j in (top, qcd)])
    assert set(np.unique(charges)) <= {-1, 0, 1} and 0.3 < np.mean(charges != 0) < 0.9


def test_same_seed_same_jets_other_seed_other_jets():
    a, b = generate_chunk("qcd", 20, seed=5), generate_chunk("qcd", 20, seed=5)
    np.testing.assert_array_equal(a.pt, b.pt)
    np.testing.assert_array_equal(a.flat_constituents()["pt"], b.flat_constituents()["pt"])
    assert not np.array_equal(a.pt, generate_chunk("qcd", 20, seed=6).pt)


def _generate_command(out, seed=3):
    return [sys.executable, "-m", "omnijet_lib.cli", "generate-jets", "--process", "qcd", "--n", "200",
            "--seed", str(seed), "--out", str(out), "--chunk-size", "20", "--workers", "1"]  # fmt: skip


def _hear_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _living_children(pid: int) -> list[int]:
    """Processes (zombies aside) whose parent is ``pid``, from Linux's /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):  # the process ended meanwhile
            continue
        if int(parent) == pid and state != "Z":
            children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("interruption", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_an_interrupted_generation_resumes_without_losing_or_duplicating_jets(tmp_path, interruption, capfd):
    out = tmp_path / "qcd.h5"
    parts = tmp_path / "qcd.h5.parts"
    # The child must hear Ctrl-C even if this test process ignores SIGINT (an ignored signal is inherited:
    # the full suite, run under some launchers or after kernels it started, can leave it ignored).
    run = subprocess.Popen(_generate_command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True, preexec_fn=_hear_ctrl_c)  # fmt: skip
    deadline = time.monotonic() + 120
    # 10 chunks, so that a test process starved of CPU (a loaded machine) still catches the run part-way
    while len(list(parts.glob("chunk_*.h5"))) < 2 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.02)
    workers = _living_children(run.pid)
    if interruption == signal.SIGINT:
        os.killpg(run.pid, interruption)  # Ctrl-C reaches the whole process group
    else:
        os.kill(run.pid, interruption)  # kill -9 of the command alone: it can stop nothing, its workers must die too
    assert run.wait(timeout=30) != 0
    finished = len(list(parts.glob("chunk_*.h5")))
    # A worker left alone would finish its chunk (a second or two) and write it; it must die at once instead.
    deadline = time.monotonic() + 1
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers and not any(_alive(pid) for pid in workers), "workers outlive the run"
    time.sleep(2)
    assert len(list(parts.glob("chunk_*.h5"))) == finished, "chunks written after the run was killed"
    assert 2 <= finished < 10, "the run should have been killed part-way"
    assert not out.exists(), "no final file before the run completes"

    stale = tmp_path / "qcd.h5.999999.tmp"  # what a run killed while merging the chunks leaves
    stale.write_bytes(b"half a file")
    subprocess.run(_generate_command(out), check=True, capture_output=True)
    assert out.exists() and not parts.exists() and not stale.exists()
    resumed = read_jets(out)
    capfd.readouterr()
    uninterrupted = generate_jets("qcd", 200, seed=3, chunk_size=20, n_workers=2, progress=False)
    # Worker processes write to the file descriptors they inherit (a notebook's cell output): no FastJet banner
    assert "FastJet" not in capfd.readouterr().out
    assert len(resumed) == 200
    np.testing.assert_array_equal(resumed.pt, uninterrupted.pt)
    np.testing.assert_array_equal(resumed.flat_constituents()["eta"], uninterrupted.flat_constituents()["eta"])
    info = jet_file_info(out)
    assert info["seed"] == 3 and info["process"] == "qcd" and "pythia8mc" in info["generator_version"]
    assert "HardQCD:all = on" in info["pythia_settings"] and info["jets_per_worker_second"] > 0

    # The same command again: nothing to do.  Other settings into the same file: refused.
    assert generate_jet_file("qcd", 200, out, seed=3, chunk_size=20) == out
    with pytest.raises(FileExistsError, match="differs in seed"):
        generate_jet_file("qcd", 200, out, seed=4, chunk_size=20)
