"""The networks: the GPT backbone with its heads and KV cache (``gpt``), sampling from their output
(``sampling``), the direct-token shower model (``spatial_gpt``, with ``energy_strategies``,
``energy_mixture`` and ``shower_sizes``), the token classifier for fine-tuning (``token_classifier``)
and the jet classifiers of the quality tests (``classifiers``).  How each trains is :mod:`omnijet_lib.training`'s."""
