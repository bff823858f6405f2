"""A parametric detector response for generator-level particles: jets as a detector would see them.

:func:`detector_response` takes final-state particles (flat arrays, one entry per
particle) and returns what a CMS-like particle-flow reconstruction would make of
them; :mod:`omnijet_lib.data.pythia_jets` applies it to every event's visible
particles *before* jet clustering.  It is a plain function of arrays: reproducible
for a given ``numpy.random.Generator`` state, and it never creates a particle -- each
particle is either dropped (and gone) or kept and smeared, and every output row
carries the ``index`` of its input particle.

Particle classes and what happens to them (numbers: :class:`DetectorResponseConfig`,
sources below and in docs/jets.md):

- **charged** (charge != 0: hadrons, electrons, muons) -> a *track*.  Kept with the
  tracking efficiency of its true (pT, |eta|): 0 for pT <= 0.1 GeV or |eta| > 2.5;
  70 % (|eta| <= 1.5) / 60 % (1.5 < |eta| <= 2.5) for 0.1 < pT <= 1 GeV; 95 % / 85 %
  above 1 GeV.  pT smeared with sigma(pT)/pT = a (+) b pT, (a, b) = (1.0 %, 1.5e-4/GeV)
  for |eta| <= 0.5, (1.5 %, 2.5e-4/GeV) for 0.5 < |eta| <= 1.5, (2.5 %, 5.5e-4/GeV)
  for 1.5 < |eta| <= 2.5.  Direction kept.  Electrons and muons get the charged-hadron
  numbers (Delphes has its own for them; they are ~1 % of jet constituents), and a
  charged particle lost by the tracker is gone: there is no calorimeter fallback.
- **photons** (PDG 22) -> the ECAL, |eta| <= 3.0: sigma(E)/E = S/sqrt(E) (+) N/E (+) C
  with S = 11 % sqrt(GeV), N = 0.40 GeV, C = 0.8 %; kept if the *measured* E > 0.5 GeV.
- **neutral hadrons** (every other neutral: n, K_L, and K_S, Lambda, Xi0, which stay
  undecayed with Pythia's tau0 < 10 mm rule) -> the HCAL, |eta| <= 3.0: S = 150 %
  sqrt(GeV), N = 0, C = 5 %; kept if the measured E > 1.0 GeV.
- **neutrinos** (PDG 12, 14, 16) are dropped: invisible.

Source of every default: the CMS card of Delphes 3, ``cards/delphes_card_CMS.tcl``
(github.com/delphes/delphes, as of commit 0593ac3): modules
``ChargedHadronTrackingEfficiency`` (efficiencies), ``ChargedHadronMomentumSmearing``
("based on arXiv:1405.6569", CMS tracking performance, JINST 9 (2014) P10009),
``ECal`` (its barrel formula sqrt(E^2 0.008^2 + E 0.11^2 + 0.40^2), "Energy shape from
arXiv:1502.02701", CMS electron performance, JINST 10 (2015) P06005; ``EnergyMin 0.5``)
and ``HCal`` (sqrt(E^2 0.050^2 + E 1.50^2) for |eta| <= 3.0; ``EnergyMin 1.0``).
Acceptances are CMS's: tracker |eta| < 2.5, ECAL and HCAL barrel + endcaps |eta| < 3.0
(the forward HF, 3 < |eta| < 5, is left out: no jet constituent of a |eta| < 2 jet
reaches it).  What Delphes does and this does not: it multiplies the ECAL resolution
by (1 + 0.64 eta^2) in the barrel and (2.16 + 5.6 (|eta| - 2)^2) in the endcaps
(arXiv:1306.2016), sums particles into calorimeter towers, cuts on the towers' energy
significance (E > 2 sigma) and smears the tower positions; here each particle is
measured by itself, with one resolution for all |eta|, its direction kept exactly.

Smearing draws a log-normal factor with mean 1 and standard deviation sigma/x (as
Delphes's ``LogNormal``): measured values are positive and unbiased on average, and
their spread is the configured resolution at any sigma.

The output is what particle flow reports: charged hadrons are pi+- with the pion
mass (PDG id 211 * charge), electrons and muons keep their ids and masses, photons
(22) and neutral hadrons (130, as in JetClass) are massless with |p| = measured E.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np

from omnijet_lib.errors import BadDataError

PARTICLE_FIELDS = ("px", "py", "pz", "energy", "charge", "pdg_id")
FLOAT_FIELDS = ("px", "py", "pz", "energy", "charge")
NEUTRINOS = (12, 14, 16)
# Particle-flow masses [GeV] (PDG 2024): charged hadrons are taken to be pions, as CMS particle flow does.
PION_MASS = 0.13957039
ELECTRON_MASS = 0.00051099895
MUON_MASS = 0.1056583755
NEUTRAL_HADRON_ID = 130  # JetClass's and particle flow's id for any neutral hadron


@dataclass(frozen=True)
class DetectorResponseConfig:
    """The numbers of a CMS-like detector; the defaults are Delphes's CMS card (module docstring).

    A region ``i`` of an ``*_eta_edges`` tuple holds edges[i-1] < |eta| <= edges[i] (the first
    starts at 0), as Delphes's formulas split |eta|.  Energies and momenta in GeV.
    """

    name: str = "cms"
    # Tracks (every charged particle)
    track_abs_eta_max: float = 2.5  # tracker acceptance
    track_pt_min: float = 0.1  # no track at or below this true pT
    track_efficiency_pt_knee: float = 1.0  # efficiency *_low_pt up to here, *_high_pt above
    track_efficiency_eta_edges: tuple[float, ...] = (1.5, 2.5)
    track_efficiency_low_pt: tuple[float, ...] = (0.70, 0.60)
    track_efficiency_high_pt: tuple[float, ...] = (0.95, 0.85)
    # sigma(pT)/pT = a (+) b pT per |eta| region
    track_resolution_eta_edges: tuple[float, ...] = (0.5, 1.5, 2.5)
    track_resolution_constant: tuple[float, ...] = (0.010, 0.015, 0.025)  # a
    track_resolution_slope: tuple[float, ...] = (1.5e-4, 2.5e-4, 5.5e-4)  # b [1/GeV]
    # ECAL (photons): sigma(E)/E = S/sqrt(E) (+) N/E (+) C
    ecal_abs_eta_max: float = 3.0
    ecal_stochastic: float = 0.11  # S [sqrt(GeV)]
    ecal_noise: float = 0.40  # N [GeV]
    ecal_constant: float = 0.008  # C
    ecal_energy_min: float = 0.5  # on the measured energy
    # HCAL (neutral hadrons)
    hcal_abs_eta_max: float = 3.0
    hcal_stochastic: float = 1.50
    hcal_noise: float = 0.0
    hcal_constant: float = 0.05
    hcal_energy_min: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "name":
                if not isinstance(value, str):
                    msg = f"DetectorResponseConfig.name must be a string, got {value!r}"
                    raise ValueError(msg)
                continue
            if str(f.type).startswith("tuple"):
                if isinstance(value, list):  # from JSON: store as a tuple, so the config stays hashable
                    value = tuple(value)
                    object.__setattr__(self, f.name, value)
                if not isinstance(value, tuple):
                    msg = f"DetectorResponseConfig.{f.name} must be a tuple of numbers, got {value!r}"
                    raise ValueError(msg)
            values = value if isinstance(value, tuple) else (value,)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in values):
                msg = f"DetectorResponseConfig.{f.name} must be finite numbers, got {value!r}"
                raise ValueError(msg)
            if any(v < 0 for v in values):
                msg = f"DetectorResponseConfig.{f.name} must not be negative, got {value!r}"
                raise ValueError(msg)
        for prefix, columns in (
            ("track_efficiency", ("low_pt", "high_pt")),
            ("track_resolution", ("constant", "slope")),
        ):
            edges = getattr(self, f"{prefix}_eta_edges")
            if not edges or any(b <= a for a, b in itertools.pairwise(edges)):
                msg = f"DetectorResponseConfig.{prefix}_eta_edges must be increasing, got {edges!r}"
                raise ValueError(msg)
            if edges[-1] < self.track_abs_eta_max:
                msg = f"DetectorResponseConfig.{prefix}_eta_edges must reach track_abs_eta_max, got {edges!r}"
                raise ValueError(msg)
            for column in columns:
                if len(getattr(self, f"{prefix}_{column}")) != len(edges):
                    msg = f"DetectorResponseConfig.{prefix}_{column} needs one value per |eta| region ({len(edges)})"
                    raise ValueError(msg)
        if max(self.track_efficiency_low_pt + self.track_efficiency_high_pt) > 1:
            msg = "DetectorResponseConfig: track efficiencies must lie in [0, 1]"
            raise ValueError(msg)

    def to_dict(self) -> dict:
        """The config as JSON-ready values (tuples as lists), as stored in a jet file's provenance."""
        return json.loads(json.dumps(asdict(self)))


DETECTORS = {"cms": DetectorResponseConfig()}  # named configurations, e.g. for ``omnijet generate-jets --detector``


def detector_config(detector: str | DetectorResponseConfig | None) -> DetectorResponseConfig | None:
    """A config from a name in :data:`DETECTORS`, ``"none"`` or ``None`` (no detector), or a config itself."""
    if detector is None or isinstance(detector, DetectorResponseConfig):
        return detector
    if detector == "none":
        return None
    if detector not in DETECTORS:
        msg = f"unknown detector {detector!r}; choose from none, {', '.join(DETECTORS)}"
        raise ValueError(msg)
    return DETECTORS[detector]


def lognormal_factor(relative_sigma: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Log-normal factors with mean 1 and standard deviation ``relative_sigma``, from standard normals."""
    b2 = np.log1p(np.square(relative_sigma))
    return np.exp(np.sqrt(b2) * normal - 0.5 * b2)


def _region(abs_eta: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Index of the |eta| region (edges[i-1] < |eta| <= edges[i]); len(edges) beyond the last edge."""
    return np.searchsorted(np.asarray(edges), abs_eta, side="left")


def _lookup(table: tuple[float, ...], region: np.ndarray) -> np.ndarray:
    """``table[region]``, with 0 beyond the last region."""
    return np.append(np.asarray(table, dtype=np.float64), 0.0)[region]


def track_efficiency(pt: np.ndarray, abs_eta: np.ndarray, config: DetectorResponseConfig) -> np.ndarray:
    """Probability that a charged particle of true (pT, |eta|) is reconstructed as a track."""
    region = _region(abs_eta, config.track_efficiency_eta_edges)
    efficiency = np.where(
        pt > config.track_efficiency_pt_knee,
        _lookup(config.track_efficiency_high_pt, region),
        _lookup(config.track_efficiency_low_pt, region),
    )
    return np.where((pt > config.track_pt_min) & (abs_eta <= config.track_abs_eta_max), efficiency, 0.0)


def track_resolution(pt: np.ndarray, abs_eta: np.ndarray, config: DetectorResponseConfig) -> np.ndarray:
    """sigma(pT)/pT of a track of true (pT, |eta|); 0 outside the tracker (such tracks are dropped anyway)."""
    region = _region(abs_eta, config.track_resolution_eta_edges)
    return np.hypot(
        _lookup(config.track_resolution_constant, region), _lookup(config.track_resolution_slope, region) * pt
    )


def calorimeter_resolution(energy: np.ndarray, stochastic: float, noise: float, constant: float) -> np.ndarray:
    """sigma(E)/E = stochastic/sqrt(E) (+) noise/E (+) constant, for E > 0."""
    energy = np.asarray(energy, dtype=np.float64)
    return np.sqrt(stochastic**2 / energy + (noise / energy) ** 2 + constant**2)


def ecal_resolution(energy: np.ndarray, config: DetectorResponseConfig) -> np.ndarray:
    """sigma(E)/E of a photon of true energy E [GeV]."""
    return calorimeter_resolution(energy, config.ecal_stochastic, config.ecal_noise, config.ecal_constant)


def hcal_resolution(energy: np.ndarray, config: DetectorResponseConfig) -> np.ndarray:
    """sigma(E)/E of a neutral hadron of true energy E [GeV]."""
    return calorimeter_resolution(energy, config.hcal_stochastic, config.hcal_noise, config.hcal_constant)


def _checked(particles: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The particle arrays as flat float64 / int64 arrays, or a clear error."""
    if not isinstance(particles, Mapping):
        msg = f"particles must be a mapping of arrays {PARTICLE_FIELDS}, got {type(particles).__name__}"
        raise TypeError(msg)
    missing = [f for f in PARTICLE_FIELDS if f not in particles]
    if missing:
        msg = f"particles lack {', '.join(missing)}; need {', '.join(PARTICLE_FIELDS)}"
        raise KeyError(msg)
    arrays = {}
    for name in PARTICLE_FIELDS:
        try:
            arrays[name] = np.asarray(particles[name], dtype=np.float64)
        except (TypeError, ValueError) as err:
            msg = f"particles[{name!r}] is not an array of numbers ({err})"
            raise BadDataError(msg) from err
    shapes = {name: a.shape for name, a in arrays.items()}
    if any(len(s) != 1 for s in shapes.values()) or len(set(shapes.values())) != 1:
        msg = f"particle arrays must be 1-d and of one length, got shapes {shapes}"
        raise ValueError(msg)
    for name in PARTICLE_FIELDS:
        bad = ~np.isfinite(arrays[name])
        if bad.any():
            msg = f"{bad.sum()} non-finite (NaN/inf) particle {name} values, first at particle {np.argmax(bad)}"
            raise BadDataError(msg)
    if (arrays["energy"] < 0).any():
        msg = f"negative particle energy, first at particle {np.argmax(arrays['energy'] < 0)}"
        raise BadDataError(msg)
    if (arrays["pdg_id"] != np.rint(arrays["pdg_id"])).any():
        msg = "particle pdg_id values must be integers"
        raise BadDataError(msg)
    arrays["pdg_id"] = arrays["pdg_id"].astype(np.int64)
    return arrays


def detector_response(
    particles: Mapping[str, np.ndarray], *, config: DetectorResponseConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """The particles a CMS-like detector reconstructs from ``particles`` (module docstring).

    ``particles`` maps :data:`PARTICLE_FIELDS` (four-momenta ``px, py, pz, energy`` in GeV,
    ``charge`` in e, ``pdg_id``) to 1-d arrays of one length.  Returns the same fields for
    the particles kept, as measured (float64; ``pdg_id`` the particle-flow class,
    ``charge`` unchanged), and ``index``: the input position of each, increasing.  Exactly
    2 random numbers are drawn per input particle, so the output depends only on the
    input, the config and the state of ``rng``.
    """
    if not isinstance(config, DetectorResponseConfig):
        msg = f"config must be a DetectorResponseConfig, got {type(config).__name__}"
        raise TypeError(msg)
    if not isinstance(rng, np.random.Generator):
        msg = f"rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(seed)), got {type(rng).__name__}"
        raise TypeError(msg)
    p = _checked(particles)
    n = len(p["energy"])
    uniform, normal = rng.random(n), rng.standard_normal(n)

    pt = np.hypot(p["px"], p["py"])
    momentum = np.hypot(pt, p["pz"])
    with np.errstate(divide="ignore", invalid="ignore"):
        abs_eta = np.abs(np.arcsinh(p["pz"] / pt))
    abs_eta[pt == 0] = np.inf  # along the beam (or at rest): outside every acceptance

    aid = np.abs(p["pdg_id"])
    charged = p["charge"] != 0
    invisible = np.isin(aid, NEUTRINOS) & ~charged
    photon = (aid == 22) & ~charged
    neutral_hadron = ~charged & ~photon & ~invisible

    # Tracks: efficiency on the true (pT, |eta|), then pT smeared; direction kept.
    track = charged & (uniform < track_efficiency(pt, abs_eta, config))
    measured_pt = pt * lognormal_factor(track_resolution(pt, abs_eta, config), normal)

    # Calorimeters: energy smeared, then the threshold on the measured energy.
    measured_energy = np.zeros(n)
    for is_class, resolution, eta_max, energy_min in (
        (photon, ecal_resolution, config.ecal_abs_eta_max, config.ecal_energy_min),
        (neutral_hadron, hcal_resolution, config.hcal_abs_eta_max, config.hcal_energy_min),
    ):
        inside = is_class & (abs_eta <= eta_max) & (p["energy"] > 0)
        energy = p["energy"][inside]
        measured_energy[inside] = energy * lognormal_factor(resolution(energy, config), normal[inside])
        measured_energy[is_class & ~(measured_energy > energy_min)] = 0.0
    calorimeter = (photon | neutral_hadron) & (measured_energy > 0)

    kept = track | calorimeter
    index = np.flatnonzero(kept)
    is_track = track[index]
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(is_track, measured_pt[index] / pt[index], measured_energy[index] / momentum[index])

    pdg_in, charge = p["pdg_id"][index], p["charge"][index]
    aid_in = np.abs(pdg_in)
    sign = np.sign(charge).astype(np.int64)
    pdg_out = np.where(aid_in == 22, 22, NEUTRAL_HADRON_ID)
    pdg_out = np.where(is_track, 211 * sign, pdg_out)
    pdg_out = np.where(is_track & (aid_in == 11), -11 * sign, pdg_out)
    pdg_out = np.where(is_track & (aid_in == 13), -13 * sign, pdg_out)
    mass = np.zeros(len(index))
    mass[is_track] = PION_MASS
    mass[is_track & (aid_in == 11)] = ELECTRON_MASS
    mass[is_track & (aid_in == 13)] = MUON_MASS

    px, py, pz = (p[f][index] * scale for f in ("px", "py", "pz"))
    energy = np.where(is_track, np.sqrt(np.square(momentum[index] * scale) + np.square(mass)), measured_energy[index])
    return {"px": px, "py": py, "pz": pz, "energy": energy, "charge": charge, "pdg_id": pdg_out, "index": index}
