"""Constituent pre-processing of OmniJet-alpha (docs/jets.md) and its exact inverse.

Per constituent: pT, eta_rel = eta - eta_jet, phi_rel = phi - phi_jet wrapped to
(-pi, pi], relative to the jet axis.  Constituents with |eta_rel| >= 0.8 or
|phi_rel| >= 0.8 are dropped, the rest scaled to ``log(pT) - 1.8``,
``3 eta_rel``, ``3 phi_rel``, sorted by pT and padded to 128 with a mask.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import awkward as ak
import numpy as np

from omnijet_lib.data.jets import Jets
from omnijet_lib.errors import BadDataError
from omnijet_lib.observables import delta_phi, wrap_phi

FEATURES = ("log_pt", "eta_rel", "phi_rel")  # the columns of a pre-processed array, scaled


@dataclass(frozen=True)
class PreprocessingConfig:
    content: ClassVar[str] = "jets"  # what a tokenizer with this pre-processing tokenizes
    max_constituents: int = 128  # sequence length of the tokenizer and the GPT
    max_abs_rel: float = 0.8  # drop constituents at |eta_rel| or |phi_rel| >= this (the jet radius)
    log_pt_shift: float = 1.8  # log(pT / GeV) - shift: centres the pT feature near 0
    angle_scale: float = 3.0  # eta_rel, phi_rel * scale: spreads the cone to about unit width

    @property
    def sequence_length(self) -> int:
        """Tokens of the longest jet, START and STOP not counted."""
        return self.max_constituents

    @property
    def n_features(self) -> int:
        """Features per constituent that a tokenizer sees: :data:`FEATURES`."""
        return len(FEATURES)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PreprocessedJets:
    """Padded, scaled constituents and what the inverse needs."""

    features: np.ndarray  # (N, max_constituents, 3) float32: FEATURES, 0 where padded
    mask: np.ndarray  # (N, max_constituents) bool: True for a real constituent
    jet_eta: np.ndarray  # (N,) axis the relative coordinates refer to
    jet_phi: np.ndarray  # (N,)
    n_dropped: np.ndarray  # (N,) constituents removed by the cone cut or the length limit

    def __len__(self) -> int:
        return len(self.mask)

    def __getitem__(self, selection) -> PreprocessedJets:
        """The jets ``selection`` (slice, index array or boolean mask), every field alike."""
        if isinstance(selection, (int, np.integer)):
            selection = slice(selection, selection + 1 if selection != -1 else None)
        return PreprocessedJets(**{f.name: getattr(self, f.name)[selection] for f in fields(self)})


def eta_rel(eta, jet_eta):
    """Pseudorapidity relative to the jet axis."""
    return eta - jet_eta


def phi_rel(phi, jet_phi):
    """Azimuth relative to the jet axis, wrapped to (-pi, pi]."""
    return delta_phi(phi, jet_phi)


def scale_features(pt, eta_rel, phi_rel, config: PreprocessingConfig = PreprocessingConfig()):
    """Physical (pT, eta_rel, phi_rel) -> the network's scaled features."""
    if np.any(np.asarray(pt) <= 0):
        msg = "constituent pT must be > 0 to take its log"
        raise BadDataError(msg)
    return (
        np.log(pt) - config.log_pt_shift,
        config.angle_scale * np.asarray(eta_rel),
        config.angle_scale * np.asarray(phi_rel),
    )


def unscale_features(log_pt, eta_rel, phi_rel, config: PreprocessingConfig = PreprocessingConfig()):
    """Inverse of :func:`scale_features`."""
    return (
        np.exp(np.asarray(log_pt) + config.log_pt_shift),
        np.asarray(eta_rel) / config.angle_scale,
        np.asarray(phi_rel) / config.angle_scale,
    )


def preprocess(jets: Jets, config: PreprocessingConfig = PreprocessingConfig()) -> PreprocessedJets:
    """Relative coordinates, cone cut, scaling, pT ordering and padding, for every jet.

    ``n_dropped`` counts per jet what the cut and the length limit removed:
    nothing disappears without a record.
    """
    c = jets.constituents
    rel_eta = eta_rel(c.eta, jets.eta)  # (N, var)
    rel_phi = ak.Array(wrap_phi(ak.to_numpy(ak.flatten(c.phi - jets.phi))))
    rel_phi = ak.unflatten(rel_phi, ak.num(c.phi, axis=1))
    inside = (abs(rel_eta) < config.max_abs_rel) & (abs(rel_phi) < config.max_abs_rel)
    order = ak.argsort(c.pt[inside], axis=1, ascending=False)
    pt, rel_eta, rel_phi = (x[inside][order] for x in (c.pt, rel_eta, rel_phi))

    n_inside = ak.to_numpy(ak.num(pt, axis=1))
    n_kept = np.minimum(n_inside, config.max_constituents)
    n_dropped = jets.n_constituents - n_kept
    columns = scale_features(*(_pad(x, config.max_constituents) for x in (pt, rel_eta, rel_phi)), config)
    mask = np.arange(config.max_constituents)[None, :] < n_kept[:, None]
    features = np.stack(columns, axis=-1).astype(np.float32)
    features[~mask] = 0.0
    return PreprocessedJets(features, mask, np.asarray(jets.eta), np.asarray(jets.phi), n_dropped)


def _pad(values: ak.Array, length: int) -> np.ndarray:
    """(N, var) -> (N, length); padding is filled with 1, a value the log accepts, then masked."""
    return ak.to_numpy(ak.fill_none(ak.pad_none(values, length, axis=1, clip=True), 1.0)).astype(np.float64)


def constituents_from_features(
    features: np.ndarray,
    mask: np.ndarray,
    jet_eta: np.ndarray,
    jet_phi: np.ndarray,
    config: PreprocessingConfig = PreprocessingConfig(),
) -> ak.Array:
    """Inverse of :func:`preprocess`: physical (pt, eta, phi) constituents of each jet.

    Works on anything in the pre-processed space: real jets, token reconstructions,
    generated jets.  Returns a jagged array with fields pt, eta, phi.
    """
    features, mask = np.asarray(features, dtype=np.float64), np.asarray(mask, dtype=bool)
    if features.ndim != 3 or features.shape[-1] != len(FEATURES) or features.shape[:2] != mask.shape:
        msg = f"expected features (N, L, {len(FEATURES)}) and mask (N, L); got {features.shape} and {mask.shape}"
        raise ValueError(msg)
    pt, rel_eta, rel_phi = unscale_features(features[..., 0], features[..., 1], features[..., 2], config)
    eta = rel_eta + np.asarray(jet_eta)[:, None]
    phi = wrap_phi(rel_phi + np.asarray(jet_phi)[:, None])
    counts = mask.sum(axis=1)
    # Real constituents come first in every row; a mask with holes would scramble jets.
    if not np.array_equal(mask, np.arange(mask.shape[1])[None, :] < counts[:, None]):
        msg = "mask must mark each jet's constituents as one leading block (True... then False...)"
        raise ValueError(msg)
    return ak.unflatten(ak.zip({"pt": pt[mask], "eta": eta[mask], "phi": phi[mask]}), counts)
