"""Binned tokenizer: a regular grid over the three scaled features (the paper's baseline).

Each feature range is cut into equal bins; a constituent's token is its grid
cell, decoded to the cell centre.  21^3 = 9261 tokens is comparable to a VQ-VAE
with 8192 codes; the paper needed 40^3 = 64 000 to match the conditional VQ-VAE.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from omnijet_lib.data.preprocessing import FEATURES, PreprocessingConfig
from omnijet_lib.tokenizers.base import Tokenizer, check_features, masked, preprocessing_from_state
from omnijet_lib.tokenizers.tokens import tokens_to_codes


@dataclass(frozen=True)
class BinnedConfig:
    bins: tuple[int, int, int] = (21, 21, 21)  # per feature: log_pt, eta_rel, phi_rel
    low: tuple[float, float, float] | None = None  # lower edges; None: fitted to data (``fit``)
    high: tuple[float, float, float] | None = None  # upper edges; values beyond fall into the edge bins
    # fitted edges: these quantiles of the training data, so that a few extreme constituents
    # (Pythia has photons at pT ~ 1e-9 GeV) do not stretch every bin of the grid
    range_quantiles: tuple[float, float] = (0.001, 0.999)

    def __post_init__(self):
        if len(self.bins) != len(FEATURES) or min(self.bins) < 1:
            msg = f"bins must be {len(FEATURES)} positive integers (one per feature {FEATURES}); got {self.bins}"
            raise ValueError(msg)
        if (self.low is None) != (self.high is None):
            msg = "give both low and high edges, or neither"
            raise ValueError(msg)
        if self.low is not None and not all(lo < hi for lo, hi in zip(self.low, self.high)):
            msg = f"every low edge must lie below its high edge; got low={self.low}, high={self.high}"
            raise ValueError(msg)


class BinnedTokenizer(Tokenizer):
    kind = "binned"

    def __init__(
        self, config: BinnedConfig = BinnedConfig(), preprocessing: PreprocessingConfig = PreprocessingConfig()
    ):
        self.config = config
        self.preprocessing = preprocessing

    @property
    def codebook_size(self) -> int:
        return int(np.prod(self.config.bins))

    @property
    def is_fitted(self) -> bool:
        return self.config.low is not None

    def fit(self, features: np.ndarray, mask: np.ndarray) -> BinnedTokenizer:
        """Set the grid to span the data in each feature, between ``config.range_quantiles``."""
        features, mask = check_features(features, mask)
        real = features[mask]  # (M, 3)
        if len(real) == 0:
            msg = "cannot fit a binned tokenizer on jets without constituents"
            raise ValueError(msg)
        low, high = np.quantile(real.astype(float), self.config.range_quantiles, axis=0)
        high = np.where(high > low, high, low + 1.0)  # a constant feature still gets a valid range
        self.config = replace(self.config, low=tuple(low.tolist()), high=tuple(high.tolist()))
        return self

    def _grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.is_fitted:
            msg = "binned tokenizer has no ranges yet: call fit(features, mask) or give low/high in BinnedConfig"
            raise RuntimeError(msg)
        bins = np.asarray(self.config.bins)
        low, high = np.asarray(self.config.low), np.asarray(self.config.high)
        return bins, low, (high - low) / bins

    def encode(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        features, mask = check_features(features, mask)
        bins, low, width = self._grid()
        cell = np.clip(np.floor((features - low) / width), 0, bins - 1).astype(np.int64)  # (N, L, 3)
        code = np.ravel_multi_index(np.moveaxis(cell, -1, 0), tuple(bins))  # (N, L) row-major over the grid
        return masked(code + 1, mask)

    def decode(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        bins, low, width = self._grid()
        codes = tokens_to_codes(tokens, mask, self.codebook_size)
        cell = np.stack(np.unravel_index(codes, tuple(bins)), axis=-1)  # (N, L, 3)
        features = (low + (cell + 0.5) * width).astype(np.float32)
        features[~np.asarray(mask, dtype=bool)] = 0.0
        return features

    def state(self) -> dict:
        return {"config": asdict(self.config)}

    @classmethod
    def from_state(cls, state: dict) -> BinnedTokenizer:
        config = {k: (tuple(v) if v is not None else None) for k, v in state["config"].items()}
        return cls(BinnedConfig(**config), preprocessing_from_state(state))
