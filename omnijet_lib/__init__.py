"""omnijet: a workbench for foundation models in particle physics (OmniJet-alpha and OmniJet-alpha_C).

The modules follow the path a user walks: ``data`` (jets, files, generation,
pre-processing) -> ``observables`` -> ``plotting``; ``notebooks`` and ``cli``
run the notebooks headless.
"""

__version__ = "0.1.0"
