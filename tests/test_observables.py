import subprocess
import sys

import awkward as ak
import numpy as np
import pytest
from conftest import make_jets

from omnijet_lib.observables import delta_r, jet_kinematics, jet_observables, nsubjettiness


def _jets(particles):
    """Jagged constituents from a list of jets, each a list of (pt, eta, phi)."""
    return ak.Array([[{"pt": p[0], "eta": p[1], "phi": p[2]} for p in jet] for jet in particles])


def test_two_particle_mass_and_axis():
    (pt1, eta1, phi1), (pt2, eta2, phi2) = (300.0, 0.1, 0.2), (200.0, -0.2, 0.5)
    kin = jet_kinematics(_jets([[(pt1, eta1, phi1), (pt2, eta2, phi2)]]))
    mass2 = 2 * pt1 * pt2 * (np.cosh(eta1 - eta2) - np.cos(phi1 - phi2))  # massless pair
    assert kin["mass"][0] == pytest.approx(np.sqrt(mass2), rel=1e-9)
    assert kin["multiplicity"][0] == 2
    assert 0.1 > kin["eta"][0] > -0.2 and 0.5 > kin["phi"][0] > 0.2


def test_tau1_of_two_particles_and_tau2_vanishes():
    jet = [(300.0, 0.0, 0.0), (100.0, 0.0, 0.4)]
    taus = nsubjettiness(_jets([jet]), n_max=3, radius=0.8)
    # The one exclusive kT axis is the pT-weighted pair: phi_axis ~ 0.1 for small angles.
    axis_phi = np.arctan2(100 * np.sin(0.4), 300 + 100 * np.cos(0.4))
    expected = (300 * axis_phi + 100 * (0.4 - axis_phi)) / (400 * 0.8)
    assert taus[0, 0] == pytest.approx(expected, rel=1e-3)
    assert taus[0, 1] == 0 and taus[0, 2] == 0


def test_three_prongs_have_small_tau32():
    rng = np.random.default_rng(0)
    prongs = [(0.0, 0.0), (0.4, 0.1), (-0.2, 0.4)]
    three = [
        (rng.uniform(5, 50), e + rng.normal(0, 0.02), p + rng.normal(0, 0.02)) for e, p in prongs for _ in range(10)
    ]
    one = [(rng.uniform(5, 50), rng.normal(0, 0.2), rng.normal(0, 0.2)) for _ in range(30)]
    obs = jet_observables(_jets([three, one]))
    assert obs["tau32"][0] < 0.3 < obs["tau32"][1]
    assert obs["tau21"][0] > obs["tau32"][0]


def test_batch_equals_one_jet_at_a_time():
    jets = make_jets([1, 2, 3, 7, 40, 90], seed=3, spread=0.2)
    batch = nsubjettiness(jets.constituents)
    for i in range(len(jets)):
        np.testing.assert_allclose(nsubjettiness(jets.constituents[i : i + 1])[0], batch[i], rtol=1e-12)


def test_delta_r_wraps():
    assert delta_r(0.0, 3.1, 0.0, -3.1) == pytest.approx(2 * np.pi - 6.2)


def test_clustering_prints_no_fastjet_banner():
    """FastJet's banner would be printed again by every worker process and cell that clusters: it is off."""
    code = (
        "import awkward as ak, fastjet\n"
        "import omnijet_lib.observables\n"
        "p = ak.Array([[{'px': 1.0, 'py': 0.0, 'pz': 0.0, 'E': 2.0}, {'px': 0.0, 'py': 1.0, 'pz': 0.0, 'E': 2.0}]])\n"
        "print(len(fastjet.ClusterSequence(p, fastjet.JetDefinition(fastjet.antikt_algorithm, 0.8)).inclusive_jets()[0]))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout == "2\n", run.stdout  # the banner goes to C++'s stdout, the captured file descriptor
