"""omnijet: a workbench for foundation models in particle physics (OmniJet-alpha and OmniJet-alpha_C).

The package is built in layers, listed in :data:`LAYERS` from the bottom up.  A
module may import from its own layer and the layers below it, never from one
above, and no chain of imports comes back to where it started (``tests/test_layers.py``
checks both, imports inside functions included).  Bottom to top:

1. ``errors``, ``atomic`` (files written whole, folder locks), ``devices``,
   ``checkpoints`` (the checkpoint format), ``networks`` (an MLP the tokenizers
   and models share): what everything else stands on.
2. ``observables``, ``shower_observables`` and ``data``: jets and showers as
   arrays, their files, their simulation and pre-processing, and physics
   quantities computed from them.
3. ``tokenizers``: constituents and hits <-> integer tokens, and token files.
4. ``models``: the networks -- the GPT backbone and its heads, the direct-token
   shower model, classifiers -- with how to sample from their output.
5. ``training``: the one training loop, and what trains each model on it.
6. ``generation``: sampling jets and showers from trained models, and decoding them.
7. ``metrics``, ``transfer``, ``workflows`` and ``cross_data``: how good the tokens, the
   generated samples and the fine-tuned taggers are; fine-tuning; the notebooks' chains
   (file -> tokens -> trained GPT -> generated jets) as library functions; pre-training
   on one jet domain and training on another.
8. ``plotting``: figures of all of the above.
9. ``notebooks`` and ``cli``: running the notebooks headless, and the command line.
"""

__version__ = "0.1.0"

# Bottom to top; each entry is a module or subpackage directly below omnijet_lib.
LAYERS = (
    ("errors", "atomic", "devices", "checkpoints", "networks"),
    ("observables", "shower_observables", "data"),
    ("tokenizers",),
    ("models",),
    ("training",),
    ("generation",),
    ("metrics", "transfer", "workflows", "cross_data"),
    ("plotting",),
    ("notebooks", "cli"),
)
