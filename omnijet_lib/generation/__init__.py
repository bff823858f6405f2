"""Generation: autoregressive sampling from the trained GPTs, and decoding what they generate.

:mod:`~omnijet_lib.generation.tokens` samples token sequences from a
:class:`~omnijet_lib.models.gpt.GPT` (jets, VQ-token showers) and decodes them;
:mod:`~omnijet_lib.generation.timing` times generation fairly, against the
reference method of the published code.
"""

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
    "generate_batch",
    "generate_sequences",
    "stop_probability_by_length",
]
