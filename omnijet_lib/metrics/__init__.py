"""Metrics: how much the tokens keep (``resolution``, ``token_quality``, ``classifier_test``), how close
generated jets and showers come to real ones (``distributions``, ``generation_quality``, ``shower_quality``,
``energy_slices``), and how well a tagger separates top from QCD jets (``tagging``)."""
