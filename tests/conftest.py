"""Shared fixtures: a small sample of real Pythia jets, generated once per test session."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from omnijet_lib.data.jets import Jets, label_index
from omnijet_lib.tokenizers.tokens import PAD, START


@pytest.fixture(scope="session")
def pythia_jets() -> dict[str, Jets]:
    from omnijet_lib.data.pythia_jets import generate_jets

    return {
        process: generate_jets(process, 300, seed=11, chunk_size=150, n_workers=2, progress=False)
        for process in ("top", "qcd")
    }


def make_jets(n_constituents, *, seed: int = 0, jet_phi=None, spread: float = 0.5) -> Jets:
    """Synthetic jets (for fast tests of bookkeeping, not of physics).

    Constituents scatter by ``spread`` around the jet axis, so some fall outside
    the 0.8 cone; ``jet_phi`` near +-pi exercises the azimuth wrap.
    """
    rng = np.random.default_rng(seed)
    counts = np.asarray(n_constituents)
    n, m = len(counts), int(counts.sum())
    jet_eta = rng.uniform(-2, 2, n)
    jet_phi = rng.uniform(-np.pi, np.pi, n) if jet_phi is None else np.asarray(jet_phi, dtype=float)
    jet_of = np.repeat(np.arange(n), counts)
    phi = np.mod(jet_phi[jet_of] + rng.normal(0, spread, m) + np.pi, 2 * np.pi) - np.pi
    flat = {
        "pt": rng.exponential(20, m).astype(np.float32) + np.float32(0.5),
        "eta": (jet_eta[jet_of] + rng.normal(0, spread, m)).astype(np.float32),
        "phi": phi.astype(np.float32),
        "charge": rng.integers(-1, 2, m).astype(np.int8),
        "pdg_id": rng.choice([211, -211, 22, 130], m).astype(np.int32),
    }
    constituents = ak.unflatten(ak.zip(flat), counts)
    constituents = constituents[ak.argsort(constituents.pt, axis=1, ascending=False)]
    return Jets(
        pt=rng.uniform(500, 1000, n).astype(np.float32),
        eta=jet_eta.astype(np.float32),
        phi=jet_phi.astype(np.float32),
        mass=rng.uniform(10, 200, n).astype(np.float32),
        label=np.where(rng.random(n) < 0.5, label_index("QCD"), label_index("Tbqq")).astype(np.int8),
        constituents=constituents,
    )


def markov_sequences(n: int, config, seed: int) -> np.ndarray:
    """Sequences with structure to learn: each code follows its predecessor (+1 mod K) 80% of the time."""
    rng = np.random.default_rng(seed)
    k = config.codebook_size
    sequences = np.full((n, config.max_length), PAD)
    sequences[:, 0] = START
    for row in range(n):
        length = rng.integers(3, config.max_length - 1)
        code = rng.integers(k)
        for t in range(1, length + 1):
            sequences[row, t] = code + 1
            code = (code + 1) % k if rng.random() < 0.8 else rng.integers(k)
        sequences[row, length + 1] = config.stop_token
    return sequences


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``item.rep_call``), for fixtures that act on a failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def stop_at(step: int, error: type[BaseException] = KeyboardInterrupt):
    """A training loop's ``on_step`` that raises ``error`` at global step ``step``: an interruption there."""

    def on_step(global_step: int) -> None:
        if global_step == step:
            raise error

    return on_step


class Killed(Exception):
    """Stands for kill -9: unlike Ctrl-C, train gets no chance to save."""
