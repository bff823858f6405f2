"""Network pieces shared by the tokenizers and the models (below both): a plain MLP."""

from __future__ import annotations

from itertools import pairwise

from torch import nn


def mlp(sizes: tuple[int, ...], *, activate_last: bool = False) -> nn.Sequential:
    """Linear layers through ``sizes`` (in, hidden..., out), each followed by a ReLU but the last
    (unless ``activate_last``: a feature map whose output feeds more layers, as in a DeepSets)."""
    layers = []
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if activate_last or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)
