"""Jet observables computed from constituents, vectorised over all jets.

Constituents are jagged awkward arrays with fields ``pt``, ``eta``, ``phi``
(the fields of :class:`omnijet_lib.data.jets.Jets`), treated as massless: that
is all a token carries, so real, reconstructed and generated jets are measured
the same way.
"""

from __future__ import annotations

import warnings

import awkward as ak
import fastjet
import numpy as np
import vector

# FastJet writes its banner to the C++ standard output of every process that first clusters:
# in a notebook each Pythia worker and each cell that reclusters would print it again, between
# the cell's own lines. It is switched off for every process that imports this module (the
# Pythia workers do, through omnijet_lib.data); docs/jets.md gives FastJet's reference instead.
fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)  # the banner setting is only in the SWIG layer

# Exclusive kT axes are found by reclustering one jet's constituents with an R so
# large that no particle merges with the beam (FastJet's JetDefinition::max_allowable_R).
_KT_RECLUSTER = fastjet.JetDefinition(fastjet.kt_algorithm, 1000.0)


def wrap_phi(phi):
    """Map angles to (-pi, pi]."""
    wrapped = np.mod(np.asarray(phi) + np.pi, 2 * np.pi) - np.pi
    return np.where(wrapped == -np.pi, np.pi, wrapped)


def delta_phi(phi1, phi2):
    """phi1 - phi2, wrapped to (-pi, pi]."""
    return wrap_phi(np.asarray(phi1) - np.asarray(phi2))


def delta_r(eta1, phi1, eta2, phi2):
    """Angular distance sqrt(deta^2 + dphi^2)."""
    return np.hypot(np.asarray(eta1) - np.asarray(eta2), delta_phi(phi1, phi2))


def pt_eta_phi_mass(px, py, pz, energy):
    """(pT, eta, phi, m) of four-momenta (1-d arrays), in float64; m is 0 where m^2 < 0 from rounding.

    scikit-hep's ``vector`` does the conversions; it gives a spacelike vector the
    mass -sqrt(-m^2), as ROOT does, which for a sum of physical momenta is rounding.
    """
    p4 = vector.array(
        {name: np.asarray(a, dtype=np.float64) for name, a in zip(("px", "py", "pz", "E"), (px, py, pz, energy))}
    )
    return p4.pt, p4.eta, p4.phi, np.maximum(p4.mass, 0.0)


def massless_four_momenta(pt, eta, phi):
    """(px, py, pz, E) of massless particles (1-d arrays), in float64."""
    pt, eta, phi = (np.asarray(a, dtype=np.float64) for a in (pt, eta, phi))
    p4 = vector.array({"pt": pt, "eta": eta, "phi": phi, "mass": np.zeros_like(pt)})
    return p4.px, p4.py, p4.pz, p4.E


def _flat(constituents: ak.Array):
    """Flat numpy pt, eta, phi and the jet index of each constituent."""
    counts = ak.to_numpy(ak.num(constituents, axis=1))
    jet_index = np.repeat(np.arange(len(counts)), counts)
    pt, eta, phi = (ak.to_numpy(ak.flatten(constituents[f], axis=1)).astype(np.float64) for f in ("pt", "eta", "phi"))
    return pt, eta, phi, jet_index, counts


def jet_kinematics(constituents: ak.Array) -> dict[str, np.ndarray]:
    """pT, eta, phi, mass and multiplicity of each jet, from its summed constituents."""
    pt, eta, phi, jet_index, counts = _flat(constituents)
    sums = [np.bincount(jet_index, weights=c, minlength=len(counts)) for c in massless_four_momenta(pt, eta, phi)]
    jet_pt, jet_eta, jet_phi, jet_mass = pt_eta_phi_mass(*sums)
    return {"pt": jet_pt, "eta": jet_eta, "phi": jet_phi, "mass": jet_mass, "multiplicity": counts}


def nsubjettiness(constituents: ak.Array, *, n_max: int = 3, radius: float = 0.8) -> np.ndarray:
    """N-subjettiness tau_1 .. tau_n_max of each jet, shape (N, n_max).

    tau_N = sum_i pT_i min_k dR(i, axis_k) / (sum_i pT_i * radius), with beta = 1
    and exclusive kT axes (FastJet), as in Thaler & Van Tilburg.  A jet with at
    most N constituents has tau_N = 0: every particle is its own axis.
    """
    pt, eta, phi, jet_index, counts = _flat(constituents)
    px, py, pz, energy = massless_four_momenta(pt, eta, phi)
    pt_sum = np.bincount(jet_index, weights=pt, minlength=len(counts))
    taus = np.zeros((len(counts), n_max))
    for n in range(1, n_max + 1):
        jets = np.flatnonzero(counts > n)
        if jets.size == 0:
            continue
        chosen = np.isin(jet_index, jets)
        particles = ak.unflatten(
            ak.zip({"px": px[chosen], "py": py[chosen], "pz": pz[chosen], "E": energy[chosen]}),
            counts[jets],
        )
        with warnings.catch_warnings():
            # fastjet 3.5's awkward interface compares the JetDefinition (not its algorithm)
            # with kt_algorithm and so warns about "jet-finders other than kt" for kt itself.
            warnings.filterwarnings("ignore", message="dcut and exclusive jets", category=UserWarning)
            axes = fastjet.ClusterSequence(particles, _KT_RECLUSTER).exclusive_jets(n_jets=n)
        axis_p = {f: ak.to_numpy(axes[f]).reshape(len(jets), n) for f in ("px", "py", "pz", "E")}
        axis_rapidity = 0.5 * np.log((axis_p["E"] + axis_p["pz"]) / (axis_p["E"] - axis_p["pz"]))
        axis_phi = np.arctan2(axis_p["py"], axis_p["px"])
        row = np.repeat(np.arange(jets.size), counts[jets])  # which chosen jet each particle is in
        # Massless particles: rapidity equals pseudorapidity.
        dr = delta_r(eta[chosen, None], phi[chosen, None], axis_rapidity[row], axis_phi[row])  # (M, n)
        taus[jets, n - 1] = np.bincount(row, weights=pt[chosen] * dr.min(axis=1), minlength=jets.size)
    return taus / (radius * np.where(pt_sum > 0, pt_sum, 1.0))[:, None]


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (e.g. tau21 of a one-particle jet)."""
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64), where=denominator > 0)


def jet_observables(constituents: ak.Array, *, radius: float = 0.8) -> dict[str, np.ndarray]:
    """Everything a jet plot needs: pT, eta, phi, mass, multiplicity, tau1..3, tau21, tau32."""
    observables = jet_kinematics(constituents)
    taus = nsubjettiness(constituents, n_max=3, radius=radius)
    observables |= {"tau1": taus[:, 0], "tau2": taus[:, 1], "tau3": taus[:, 2]}
    observables["tau21"] = ratio(taus[:, 1], taus[:, 0])
    observables["tau32"] = ratio(taus[:, 2], taus[:, 1])
    return observables
