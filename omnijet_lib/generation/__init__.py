"""Generation: autoregressive sampling from the trained GPTs, and decoding what they generate.

:mod:`~omnijet_lib.generation.tokens` samples token sequences from a
:class:`~omnijet_lib.models.gpt.GPT` (jets, VQ-token showers) and decodes them;
:mod:`~omnijet_lib.generation.timing` times generation fairly, against the
reference method of the published code; :mod:`~omnijet_lib.generation.hits`
generates showers hit by hit with the direct-token model
(:class:`~omnijet_lib.models.spatial_gpt.SpatialGPT`).
"""

from omnijet_lib.generation.hits import draw_shower_sizes, generate_hits, generate_showers
from omnijet_lib.generation.tokens import (
    COMPACT_FRACTION,
    decode_generated_jets,
    decode_generated_showers,
    generate_batch,
    generate_sequences,
    stop_probability_by_length,
)

__all__ = [
    "COMPACT_FRACTION",
    "decode_generated_jets",
    "decode_generated_showers",
    "draw_shower_sizes",
    "generate_batch",
    "generate_hits",
    "generate_sequences",
    "generate_showers",
    "stop_probability_by_length",
]
