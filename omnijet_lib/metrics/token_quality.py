"""Token quality: what a tokenizer keeps of a jet, and where its tokens sit in feature space.

- :func:`token_residuals`: reconstructed - original for every constituent feature and
  jet observable, per jet class (the paper's resolution study, appendix A.2);
- :func:`mass_error_sources`: the jet-mass residual with only the pT or only the
  angles reconstructed: which of them a tokenizer's mass error comes from;
- :func:`codebook_utilisation`: the fraction of the K codes real jets use;
- :func:`token_blobs`: one token decoded inside many random contexts (the paper's
  Fig. 2): a conditional token spreads into a blob, an unconditional or binned
  token stays a fixed point.
"""

from __future__ import annotations

import numpy as np

from omnijet_lib.data.preprocessing import FEATURES, PreprocessedJets, constituents_from_features, unscale_features
from omnijet_lib.metrics.resolution import constituent_residuals, jet_residuals
from omnijet_lib.tokenizers.base import Tokenizer


def token_residuals(
    tokenizer: Tokenizer,
    jets: PreprocessedJets,
    labels: np.ndarray,
    class_names: dict[int, str],
    *,
    reconstructed: np.ndarray | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """residuals[class_name][observable] for decode(encode(jets)) vs the jets themselves.

    Observables: constituent ``pt`` [GeV], ``eta_rel``, ``phi_rel``; jet ``mass``,
    ``pt`` (as ``jet_pt``), ``tau21``, ``tau32``.  ``reconstructed``: the tokenizer's
    ``reconstruct(jets.features, jets.mask)`` if already at hand (it is not redone).
    """
    if reconstructed is None:
        reconstructed = tokenizer.reconstruct(jets.features, jets.mask)
    residuals = {}
    for name, (original, decoded) in _per_class(tokenizer, jets, reconstructed, labels, class_names):
        per_jet = jet_residuals(original, decoded)
        residuals[name] = {**constituent_residuals(original, decoded), **{f"jet_{k}": v for k, v in per_jet.items()}}
    return residuals


# The features each source of mass error reconstructs; the others keep their original values.
MASS_ERROR_SOURCES = {"all": FEATURES, "pt": ("log_pt",), "angles": ("eta_rel", "phi_rel")}


def mass_error_sources(
    tokenizer: Tokenizer,
    jets: PreprocessedJets,
    labels: np.ndarray,
    class_names: dict[int, str],
    *,
    reconstructed: np.ndarray | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """residuals[class_name][source]: jet-mass residual [GeV] with only the source's features reconstructed.

    Sources (:data:`MASS_ERROR_SOURCES`): ``all``, ``pt`` (reconstructed pT on the original
    angles) and ``angles`` (reconstructed eta_rel, phi_rel with the original pT).  A
    tokenizer whose mass error comes from the angles needs finer codes where the hard
    constituents sit, not a better pT.  ``reconstructed`` as in :func:`token_residuals`.
    """
    if reconstructed is None:
        reconstructed = tokenizer.reconstruct(jets.features, jets.mask)
    residuals = {}
    for source, features in MASS_ERROR_SOURCES.items():
        columns = [FEATURES.index(f) for f in features]
        mixed = jets.features.copy()
        mixed[..., columns] = reconstructed[..., columns]
        for name, (original, decoded) in _per_class(tokenizer, jets, mixed, labels, class_names):
            residuals.setdefault(name, {})[source] = jet_residuals(original, decoded)["mass"]
    return residuals


def _per_class(tokenizer, jets, reconstructed, labels, class_names):
    """(class name, (original, reconstructed) physical constituents) for each class present."""
    for label, name in class_names.items():
        pick = np.asarray(labels) == label
        if not pick.any():
            continue
        original, decoded = (
            constituents_from_features(
                f[pick], jets.mask[pick], jets.jet_eta[pick], jets.jet_phi[pick], tokenizer.preprocessing
            )
            for f in (jets.features, reconstructed)
        )
        yield name, (original, decoded)


def codebook_utilisation(tokens: np.ndarray, mask: np.ndarray, codebook_size: int) -> float:
    """Fraction of the codebook's tokens that occur among ``tokens`` (masked positions ignored)."""
    return len(np.unique(np.asarray(tokens)[np.asarray(mask, dtype=bool)])) / codebook_size


def token_blobs(
    tokenizer: Tokenizer,
    tokens: np.ndarray,
    *,
    context_pool: np.ndarray,
    n_contexts: int = 500,
    context_size: int = 50,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Decode each token of ``tokens`` inside ``n_contexts`` random contexts.

    Each context is the token plus ``context_size - 1`` others drawn from
    ``context_pool`` (e.g. all tokens of real jets, so contexts look like jets
    token-wise).  Returns physical coordinates of the token's reconstruction,
    arrays of shape (len(tokens), n_contexts): ``pt`` [GeV], ``eta_rel``, ``phi_rel``.
    """
    tokens, pool = np.atleast_1d(np.asarray(tokens, dtype=np.int64)), np.asarray(context_pool, dtype=np.int64)
    if pool.size == 0:
        msg = "context_pool is empty: pass the tokens of some real jets"
        raise ValueError(msg)
    if context_size > tokenizer.preprocessing.max_constituents or context_size < 1:
        msg = f"context_size must be 1..{tokenizer.preprocessing.max_constituents}, got {context_size}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    mask = np.zeros((n_contexts, tokenizer.preprocessing.max_constituents), dtype=bool)
    mask[:, :context_size] = True
    out = {name: np.empty((len(tokens), n_contexts)) for name in ("pt", "eta_rel", "phi_rel")}
    for i, token in enumerate(tokens):
        contexts = np.full(mask.shape, -1, dtype=np.int64)
        contexts[:, :context_size] = rng.choice(pool, size=(n_contexts, context_size))
        contexts[:, 0] = token  # the decoders see a set: where the token sits does not matter
        decoded = tokenizer.decode(contexts, mask)[:, 0]  # (n_contexts, 3)
        pt, eta, phi = unscale_features(decoded[:, 0], decoded[:, 1], decoded[:, 2], tokenizer.preprocessing)
        out["pt"][i], out["eta_rel"][i], out["phi_rel"][i] = pt, eta, phi
    return out


def fixed_points(tokenizer: Tokenizer, *, batch_size: int = 4096) -> dict[str, np.ndarray]:
    """Every token decoded alone: the fixed points of a context-free (binned, unconditional) tokenizer."""
    k, length = tokenizer.codebook_size, tokenizer.preprocessing.max_constituents
    tokens = np.full((k, length), -1, dtype=np.int64)
    tokens[:, 0] = np.arange(1, k + 1)  # one token per jet, nothing else in it
    mask = tokens >= 0
    decoded = np.concatenate(
        [tokenizer.decode(tokens[i : i + batch_size], mask[i : i + batch_size])[:, 0] for i in range(0, k, batch_size)]
    )  # (K, 3)
    pt, eta, phi = unscale_features(decoded[:, 0], decoded[:, 1], decoded[:, 2], tokenizer.preprocessing)
    return {"pt": pt, "eta_rel": eta, "phi_rel": phi}
