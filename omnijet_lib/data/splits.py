"""Train / validation / test splits that every notebook draws alike.

The same ``(n, seed)`` gives the same split in notebooks 02, 04 and 05, so the
test jets of one are never the training jets of another.
"""

from __future__ import annotations

import numpy as np


def split_indices(
    n: int, *, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle 0..n-1 and cut it into disjoint (train, val, test) index arrays covering all of it.

    Each part is sorted; the test part takes what rounding leaves over.
    """
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
        msg = f"fractions must be three positive numbers summing to 1 (train, val, test); got {fractions}"
        raise ValueError(msg)
    n_train, n_val = int(round(fractions[0] * n)), int(round(fractions[1] * n))
    if n_train < 1 or n_val < 1 or n - n_train - n_val < 1:
        msg = f"{n} samples are too few to split into {fractions} with every part non-empty"
        raise ValueError(msg)
    order = np.random.default_rng(seed).permutation(n)
    parts = order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
    return tuple(np.sort(p) for p in parts)
