"""The interface every tokenizer speaks, and its one-file save format.

A tokenizer maps a jet's pre-processed constituents ``(N, L, 3)`` with a mask to
tokens ``(N, L)`` (1..K, ``PAD`` where masked) and back.  ``encode_jets`` and
``decode_constituents`` add the physical units on either side, through the
pre-processing of :mod:`omnijet_lib.data.preprocessing` and its inverse.

The same tokenizers serve calorimeter showers: given a
:class:`~omnijet_lib.data.shower_preprocessing.ShowerPreprocessingConfig`, the
features are a hit's scaled (x, y, z, log E) and the jet-only methods do not apply.

A saved tokenizer is one file holding its kind, config, weights and the
pre-processing constants (and which pre-processing they belong to);
:func:`load_tokenizer` needs nothing else.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

import awkward as ak
import numpy as np

from omnijet_lib.atomic import save_atomic
from omnijet_lib.data.jets import Jets
from omnijet_lib.data.preprocessing import FEATURES, PreprocessingConfig, constituents_from_features, preprocess
from omnijet_lib.tokenizers.tokens import PAD, from_sequences

FILE_FORMAT = "omnijet-tokenizer"
FILE_VERSION = 1


class Tokenizer(ABC):
    """Constituents <-> tokens, in pre-processed (scaled) units."""

    kind: str  # name stored in the file, picks the class on load
    preprocessing: PreprocessingConfig  # or a ShowerPreprocessingConfig for calorimeter showers
    source_file: str = ""  # the file it was loaded from (set by load_tokenizer), recorded in what it makes

    @property
    @abstractmethod
    def codebook_size(self) -> int:
        """K: the number of code tokens (the vocabulary adds START and STOP)."""

    @abstractmethod
    def encode(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(N, L, 3) scaled features + (N, L) mask -> (N, L) tokens in 1..K, PAD where masked."""

    @abstractmethod
    def decode(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(N, L) tokens + mask -> (N, L, 3) scaled features, 0 where masked."""

    @abstractmethod
    def state(self) -> dict:
        """Everything :meth:`from_state` needs, as plain types and tensors."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict) -> Tokenizer:
        """Rebuild a tokenizer from :meth:`state`."""

    # --- shared behaviour -------------------------------------------------

    def reconstruct(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """decode(encode(x)): what survives tokenization."""
        return self.decode(self.encode(features, mask), mask)

    def encode_jets(self, jets: Jets) -> tuple[np.ndarray, np.ndarray]:
        """Physical jets -> (tokens, mask), pre-processing with this tokenizer's constants."""
        pre = preprocess(jets, self.preprocessing)
        return self.encode(pre.features, pre.mask), pre.mask

    def decode_constituents(
        self,
        tokens: np.ndarray,
        mask: np.ndarray,
        *,
        jet_eta: np.ndarray | None = None,
        jet_phi: np.ndarray | None = None,
    ) -> ak.Array:
        """Tokens -> physical constituents (pt, eta, phi).

        Tokens carry only coordinates relative to the jet axis; without ``jet_eta``
        and ``jet_phi`` (generated jets) the axis is put at eta = phi = 0.
        """
        n = len(mask)
        jet_eta = np.zeros(n) if jet_eta is None else jet_eta
        jet_phi = np.zeros(n) if jet_phi is None else jet_phi
        features = self.decode(tokens, mask)
        return constituents_from_features(features, mask, jet_eta, jet_phi, self.preprocessing)

    def decode_sequences(self, sequences: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """GPT sequences (START .. STOP, PAD) -> ``(features (n, L, 3), mask, kept)``, scaled units.

        A sequence without any constituent (STOP right after START) makes no jet:
        it is left out, and ``kept`` indexes the sequences that remain.
        """
        tokens, mask = from_sequences(sequences, self.codebook_size, max_length=self.preprocessing.sequence_length)
        kept = np.flatnonzero(mask.any(axis=1))
        return self.decode(tokens[kept], mask[kept]), mask[kept], kept

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer to one self-describing file (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "kind": self.kind,
            "preprocessing": self.preprocessing.to_dict(),
            "preprocessing_kind": type(self.preprocessing).__name__,
            **self.state(),
        }
        save_atomic(payload, path)
        return path

    def __repr__(self) -> str:
        return f"{type(self).__name__}(codebook_size={self.codebook_size})"


def preprocessing_from_state(state: dict):
    """The pre-processing config stored in a tokenizer file: jets' (the default, older files) or showers'."""
    from omnijet_lib.data.shower_preprocessing import ShowerPreprocessingConfig

    kinds = {cls.__name__: cls for cls in (PreprocessingConfig, ShowerPreprocessingConfig)}
    kind = state.get("preprocessing_kind", PreprocessingConfig.__name__)
    if kind not in kinds:
        msg = f"unknown pre-processing {kind!r} in a tokenizer file; known: {sorted(kinds)}"
        raise ValueError(msg)
    return kinds[kind](**state["preprocessing"])


def check_features(features, mask, *, n_features: int = len(FEATURES)) -> tuple[np.ndarray, np.ndarray]:
    """Validate the (N, L, F) features / (N, L) mask pair every tokenizer takes."""
    features, mask = np.asarray(features, dtype=np.float32), np.asarray(mask, dtype=bool)
    if features.ndim != 3 or features.shape[-1] != n_features or features.shape[:2] != mask.shape:
        msg = f"expected features (N, L, {n_features}) and mask (N, L); got {features.shape} and {mask.shape}"
        raise ValueError(msg)
    if not np.isfinite(features[mask]).all():
        msg = "features contain NaN or infinite values at unmasked positions"
        raise ValueError(msg)
    return features, mask


def masked(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Put PAD at masked positions."""
    return np.where(mask, tokens, PAD)
