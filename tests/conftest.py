"""Shared fixtures: a small sample of real Pythia jets, generated once per test session."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from omnijet_lib.data.jets import Jets, label_index


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
