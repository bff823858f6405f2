"""The notebooks' chains as library functions, so that a notebook narrates instead of gluing.

:func:`fit_jet_generator` carries tokenized jets to a trained generator: it
chooses the GPT's conditions from the data (the vocabulary, the longest
sequence, the jet pT bins), trains it on the training split read from disk,
follows a small generated sample every epoch if asked, and returns a
:class:`JetGenerator` whose :meth:`~JetGenerator.generate` gives new jets,
decoded to constituents -- tokenize (``tokenized``) -> train -> generate -> decode.

:func:`jet_features` and :func:`train_jet_tokenizer` are notebook 02's data and
training, :func:`jet_token_data` and :func:`train_jet_gpt` notebook 04's,
:func:`shower_split`, :func:`train_shower_tokenizer` and :func:`train_shower_gpt`
notebook 06's, :func:`train_direct_shower_model` notebook 07's, :func:`tagging_data`
notebook 05's (whose scan is :func:`omnijet_lib.transfer.run_scan`), all
taking their parameters by name: the notebooks call them, and so does ``omnijet
train`` (alone, or as one of torchrun's processes), so that a run trained by either
is the same run, which the other continues or returns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from omnijet_lib.data.hit_sequences import ORDERS, hit_sequences
from omnijet_lib.data.jet_files import read_jets
from omnijet_lib.data.jets import Jets, concatenate, label_index
from omnijet_lib.data.pion_simulation import pion_dataset
from omnijet_lib.data.preprocessing import PreprocessedJets, preprocess
from omnijet_lib.data.pythia_jets import jet_dataset
from omnijet_lib.data.shower_files import read_showers
from omnijet_lib.data.shower_preprocessing import ShowerPreprocessingConfig, preprocess_showers
from omnijet_lib.data.shower_simulation import shower_dataset
from omnijet_lib.data.showers import Showers
from omnijet_lib.data.splits import split_indices
from omnijet_lib.generation import decode_generated_jets, generate_sequences
from omnijet_lib.metrics.generation_quality import generation_monitor
from omnijet_lib.models.energy_strategies import EnergyStrategy
from omnijet_lib.models.gpt import GPT, GPTConfig, read_gpt_checkpoint, read_pretrained_gpt
from omnijet_lib.models.spatial_gpt import TOKENIZATIONS, SpatialGPT, SpatialGPTConfig
from omnijet_lib.tokenizers import QuantizerConfig, VQVAEConfig
from omnijet_lib.tokenizers.base import Tokenizer
from omnijet_lib.tokenizers.registry import load_tokenizer
from omnijet_lib.tokenizers.specs import build_tokenizer
from omnijet_lib.tokenizers.token_dataset import TokenDataset
from omnijet_lib.tokenizers.token_files import read_token_file, tokenized
from omnijet_lib.training import TrainingConfig, TrainingResult
from omnijet_lib.training.gpt import check_same_tokenizer, fit_gpt, tokenizer_record
from omnijet_lib.training.spatial_gpt import fit_spatial_gpt
from omnijet_lib.training.tokenizers import fit_tokenizer
from omnijet_lib.transfer import TaggingData

CONDITIONS_FROM = ("training", "model")


@dataclass
class JetGenerator:
    """A trained GPT with the tokenizer that decodes it and the pools its jets' conditions are drawn from.

    ``multiplicities`` and ``jet_pt`` (one entry per training jet, drawn together)
    are None where the GPT draws the condition itself, or has none.
    """

    model: GPT
    tokenizer: Tokenizer
    multiplicities: np.ndarray | None = None
    jet_pt: np.ndarray | None = None

    def sequences(
        self, n: int, *, batch_size: int = 256, temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
        progress: bool = True, precision: str = "fp32", compile: bool = False,
    ) -> np.ndarray:  # fmt: skip
        """``n`` generated token sequences (a token file's layout: START .. STOP, PAD)."""
        return generate_sequences(
            self.model, n, batch_size=batch_size, temperature=temperature, top_k=top_k, seed=seed, progress=progress,
            multiplicities=self.multiplicities, jet_pt=self.jet_pt, precision=precision,
            compile=compile,
        )  # fmt: skip

    def generate(self, n: int, **options) -> tuple[Jets, np.ndarray]:
        """``n`` new jets decoded to constituents (axis at eta = phi = 0), and their sequences.

        A sequence that stopped at once makes no jet and is left out, so fewer than
        ``n`` jets may come back; ``options`` are :meth:`sequences`'.
        """
        sequences = self.sequences(n, **options)
        jets, kept = decode_generated_jets(sequences, self.tokenizer)
        return jets, sequences[kept]


def fit_jet_generator(
    dataset: TokenDataset,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    tokenizer: Tokenizer,
    gpt: GPTConfig,
    training: TrainingConfig,
    run_dir: str | os.PathLike,
    *,
    jet_pt_bins: int = 0,
    conditions_from: str = "training",
    monitor_jets: int = 0,
    progress: bool = True,
    init_from: str | os.PathLike | None = None,
    strategy: str = "scratch",
    max_length: int | None = None,
) -> tuple[JetGenerator, TrainingResult]:
    """Train a GPT on the jets ``train_idx`` of ``dataset`` (validated on ``val_idx``); return it as a generator.

    ``gpt`` gives the architecture and whether the multiplicity comes first; the
    data set the rest: the codebook size (``tokenizer``'s), the longest sequence
    (``dataset.width``) and, with ``jet_pt_bins`` >= 2, the edges of that many
    equally filled bins of the training jets' pT -- finest where the jets are many,
    at the selection's edge.  ``conditions_from`` says where generation takes a
    jet's multiplicity and pT bin: from the training jets, drawn together
    ("training"), or from the GPT's own learned distributions ("model").  With
    ``monitor_jets``, that many jets are generated after every epoch and compared
    with the decoded validation jets (``sample_w1m``, ``sample_w1n``).  The run
    lives in ``run_dir`` and resumes from there.

    ``max_length`` (default: the data's longest sequence) sets the GPT's longest sequence, and with the
    multiplicity token its vocabulary: two domains trained in turn share one (cross_data).
    ``init_from`` and ``strategy`` ("scratch", "finetune", "frozen") start the GPT from a
    pre-trained generative checkpoint, e.g. one trained on the jets of another domain
    (:func:`~omnijet_lib.training.gpt.fit_gpt` says what each does and what is checked
    before training).  The tokens' meaning is then the checkpoint's: with ``jet_pt_bins``
    the P(b) tokens keep its jet-pT edges (its ``jet_pt_bins`` must be the same) instead of
    this data's quantiles.  The run records the tokenizer file's name and digest
    (``tokenizer.source_file``, when it was loaded from one), so that a GPT fine-tuned
    from it can be checked to read tokens of the same tokenizer.
    """
    if conditions_from not in CONDITIONS_FROM:
        msg = f"conditions_from must be one of {CONDITIONS_FROM}, got {conditions_from!r}"
        raise ValueError(msg)
    if jet_pt_bins == 1 or jet_pt_bins < 0:
        msg = f"jet_pt_bins must be 0 (no jet pT token) or at least 2, got {jet_pt_bins}"
        raise ValueError(msg)
    train_jet_pt = dataset.column("jet_pt", train_idx)
    edges = tuple(np.quantile(train_jet_pt, np.arange(1, jet_pt_bins) / jet_pt_bins)) if jet_pt_bins else ()
    if init_from is not None and strategy != "scratch" and jet_pt_bins:
        stored, _ = read_gpt_checkpoint(init_from)
        if stored.n_jet_pt_bins == jet_pt_bins:  # otherwise fit_gpt refuses it, naming both edges
            edges = stored.jet_pt_edges
    if max_length is not None and max_length < dataset.width:
        msg = f"max_length={max_length} is shorter than the longest sequence of the data ({dataset.width} tokens)"
        raise ValueError(msg)
    length = dataset.width if max_length is None else max_length
    config = replace(gpt, codebook_size=tokenizer.codebook_size, max_length=length, jet_pt_edges=edges)
    from_training = conditions_from == "training"
    multiplicities = dataset.lengths[train_idx] - 2 if config.multiplicity_token and from_training else None
    jet_pt = train_jet_pt if jet_pt_bins and from_training else None
    monitor = None
    if monitor_jets:
        reference, _ = decode_generated_jets(dataset.sequences(val_idx), tokenizer)
        monitor = generation_monitor(
            tokenizer, reference, n_jets=monitor_jets, seed=training.seed, multiplicities=multiplicities, jet_pt=jet_pt
        )
    conditioned = {"train_jet_pt": train_jet_pt, "val_jet_pt": dataset.column("jet_pt", val_idx)} if edges else {}
    model, result = fit_gpt(
        config, dataset.rows(train_idx), dataset.rows(val_idx), training, run_dir, evaluate=monitor,
        progress=progress, init_from=init_from, strategy=strategy, tokenizer_file=tokenizer.source_file or None,
        **conditioned,
    )  # fmt: skip
    return JetGenerator(model, tokenizer, multiplicities, jet_pt), result


def training_config(parameters: dict[str, object], **changes) -> TrainingConfig:
    """The :class:`TrainingConfig` a notebook's ``parameters`` give, by name (``torch_compile`` sets ``compile``).

    What ``omnijet train`` builds from them; the notebooks spell theirs out, and a run
    one trained is refused by the other, naming the field, if the two ever differ.
    """
    names = {f.name for f in fields(TrainingConfig)}
    given = {("compile" if name == "torch_compile" else name): value for name, value in parameters.items()}
    return TrainingConfig(**{name: value for name, value in given.items() if name in names} | changes)


class JetFeatures(NamedTuple):
    """Top and QCD jets (top first, then QCD), pre-processed, and the 60/20/20 split by seed of notebooks 02-05."""

    jets: Jets
    features: PreprocessedJets
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray


def jet_features(*, n_jets: int, seed: int, data_dir: str | os.PathLike, n_workers: int | None = None) -> JetFeatures:
    """Notebook 02's data: ``n_jets`` jets per class (generated once), pre-processed, split by ``seed``."""
    paths = jet_dataset(n_jets, seed=seed, data_dir=data_dir, n_workers=n_workers)
    jets = concatenate([read_jets(paths["top"]), read_jets(paths["qcd"])])
    return JetFeatures(jets, preprocess(jets), *split_indices(len(jets), seed=seed))


def train_jet_tokenizer(
    spec: str,
    data: JetFeatures,
    training: TrainingConfig,
    *,
    hidden_dim: int,
    n_blocks: int,
    n_heads: int,
    mlp_layers: int,
    jet_weight: float,
    run_dir: str | os.PathLike,
    progress: bool = True,
) -> Tokenizer:
    """Notebook 02's tokenizer ``spec`` (e.g. "conditional-512"), fitted in ``run_dir/<spec>``; its parameters by name.

    The caller saves it (``tokenizer.save``), under torchrun from one process.
    """
    kind = spec.partition("-")[0]
    vqvae = VQVAEConfig(
        hidden_dim=hidden_dim, n_heads=n_heads, jet_weight=jet_weight, quantizer=QuantizerConfig(),
        n_layers=n_blocks if kind == "conditional" else mlp_layers,
    )  # fmt: skip
    tokenizer = build_tokenizer(spec, vqvae=vqvae, device=training.device, seed=training.seed)
    train, val = data.features[data.train_idx], data.features[data.val_idx]
    return fit_tokenizer(tokenizer, train, val, training=training, run_dir=Path(run_dir) / spec, progress=progress)


@dataclass
class JetTokenData:
    """Tokenized top and QCD jets (top first, then QCD) with notebook 02's split, and their tokenizer."""

    tokenizer: Tokenizer
    tokenizer_file: Path
    dataset: TokenDataset
    train_idx: np.ndarray  # a random subset of the training split when n_train is given
    val_idx: np.ndarray
    test_idx: np.ndarray


def jet_token_data(
    *,
    n_jets: int,
    seed: int,
    data_dir: str | os.PathLike,
    tokenizer: str,
    tokenizer_dir: str | os.PathLike,
    token_dir: str | os.PathLike,
    n_workers: int | None = None,
    n_train: int | None = None,
    device: str = "auto",
) -> JetTokenData:
    """Notebook 04's data: ``n_jets`` jets per class (generated once), tokenized once with notebook 02's
    ``<tokenizer>_seed<seed>.pt``, split 60/20/20 by ``seed``; ``n_train`` training jets drawn from the split."""
    tokenizer_file = Path(tokenizer_dir) / f"{tokenizer}_seed{seed}.pt"
    if not tokenizer_file.exists():
        msg = (
            f"tokenizer file not found: {tokenizer_file}; run notebook 02_tokenization_quality with "
            f"tokenizers=[{tokenizer!r}] and seed={seed} first"
        )
        raise FileNotFoundError(msg)
    paths = jet_dataset(n_jets, seed=seed, data_dir=data_dir, n_workers=n_workers)
    # Training reads the token files batch by batch from disk (TokenDataset): the data may exceed memory.
    token_files = {name: tokenized(path, tokenizer_file, token_dir) for name, path in paths.items()}
    dataset = TokenDataset([token_files["top"], token_files["qcd"]])  # notebook 02's order: top, then QCD
    train_idx, val_idx, test_idx = split_indices(len(dataset), seed=seed)  # notebook 02's split
    if n_train is not None:
        if not 1 <= n_train <= len(train_idx):
            msg = f"n_train={n_train} must be between 1 and the {len(train_idx)} jets of the training split"
            raise ValueError(msg)
        # a random subset: the split's parts are sorted, and the first indices are the top jets
        train_idx = np.sort(np.random.default_rng(seed).choice(train_idx, n_train, replace=False))
    tok = load_tokenizer(tokenizer_file, device=device)
    return JetTokenData(tok, tokenizer_file, dataset, train_idx, val_idx, test_idx)


def train_jet_gpt(
    data: JetTokenData,
    training: TrainingConfig,
    *,
    embed_dim: int,
    n_heads: int,
    n_blocks: int,
    ffn_dim: int,
    multiplicity_token: bool,
    multiplicity_from: str,
    count_down: bool,
    jet_pt_bins: int,
    monitor_jets: int,
    run_dir: str | os.PathLike,
    progress: bool = True,
    init_from: str | os.PathLike | None = None,
    strategy: str = "scratch",
    max_length: int | None = None,
) -> tuple[JetGenerator, TrainingResult]:
    """Notebook 04's GPT, trained (or continued, or returned if done) in ``run_dir/gpt``; its parameters by name.

    ``init_from`` and ``strategy``: start from a pre-trained generative checkpoint (:func:`fit_jet_generator`).
    """
    architecture = GPTConfig(
        embed_dim=embed_dim,
        n_heads=n_heads,
        n_blocks=n_blocks,
        ffn_dim=ffn_dim,
        multiplicity_token=multiplicity_token,
        count_down=count_down,
    )  # the data set the vocabulary, the longest sequence and the pT bins
    return fit_jet_generator(
        data.dataset, data.train_idx, data.val_idx, data.tokenizer, architecture, training, Path(run_dir) / "gpt",
        jet_pt_bins=jet_pt_bins, conditions_from=multiplicity_from, monitor_jets=monitor_jets, progress=progress,
        init_from=init_from, strategy=strategy, max_length=max_length,
    )  # fmt: skip


def tagging_data(
    *,
    n_jets: int,
    seed: int,
    data_dir: str | os.PathLike,
    tokenizer: str,
    tokenizer_dir: str | os.PathLike,
    token_dir: str | os.PathLike,
    pretrained: str | os.PathLike,
    n_val: int,
    n_test: int,
    n_workers: int | None = None,
) -> tuple[TaggingData, GPTConfig]:
    """Notebook 05's labelled jets (top = 1, QCD = 0) and the backbone config of ``pretrained``.

    Notebook 02/04's jets, split and tokenizer; the training pool stays on disk, and
    ``n_val`` validation and ``n_test`` test jets are drawn once from their splits by ``seed``.
    """
    if not Path(pretrained).exists():
        msg = f"generative checkpoint not found: {pretrained}; run notebook 04_generation first (or point 'pretrained' at one)"
        raise FileNotFoundError(msg)
    backbone = read_pretrained_gpt(pretrained)
    gpt_config = backbone.config
    jets = jet_token_data(
        n_jets=n_jets, seed=seed, data_dir=data_dir, tokenizer=tokenizer, tokenizer_dir=tokenizer_dir,
        token_dir=token_dir, n_workers=n_workers, device="cpu",
    )  # fmt: skip
    dataset = jets.dataset  # the training pool stays on disk: each run reads only the jets of its size
    if dataset.codebook_size != gpt_config.codebook_size:
        msg = (
            f"{jets.tokenizer_file} has {dataset.codebook_size} codes but the backbone in {pretrained} "
            f"{gpt_config.codebook_size}"
        )
        raise ValueError(msg)
    # The same number of codes is not the same codes: a backbone pre-trained on another tokenizer's tokens
    # (e.g. notebook 09's, fitted on another jet sample) would read these jets' codes wrongly.
    check_same_tokenizer(backbone, pretrained, tokenizer_record(jets.tokenizer_file), what="these jets' tokens")
    is_top = (dataset.column("label") == label_index("Tbqq")).astype(np.int64)  # signal = 1
    train_idx = jets.train_idx
    # each drawn with a generator of its own, as notebook 05 always drew them
    val_idx, test_idx = (
        np.random.default_rng(seed).permutation(i)[:n] for i, n in ((jets.val_idx, n_val), (jets.test_idx, n_test))
    )
    jet_pt = dataset.column("jet_pt")  # read by a backbone conditioned on the jet pT (notebook 04's jet_pt_token)
    data = TaggingData(
        dataset.rows(train_idx), is_top[train_idx],
        dataset.sequences(val_idx), is_top[val_idx], dataset.sequences(test_idx), is_top[test_idx],
        train_jet_pt=jet_pt[train_idx], val_jet_pt=jet_pt[val_idx], test_jet_pt=jet_pt[test_idx],
    )  # fmt: skip
    return data, gpt_config


class ShowerSplit(NamedTuple):
    file: Path  # the simulated showers' file
    showers: Showers
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray


def shower_split(
    *,
    n_showers: int,
    seed: int,
    energy: float | list[float] | tuple[float, float],
    data_dir: str | os.PathLike,
    particle: str = "photon",
) -> ShowerSplit:
    """Notebooks 06, 07 and 08's showers (simulated once) and their 60/20/20 split by ``seed``.

    ``energy``: one incident energy, or a range (low, high) [GeV] drawn uniformly.  ``particle``:
    "photon" (the ILD ECAL, notebooks 06 and 07), "pion" or "electron" (the AHCAL, notebook 08).
    """
    energy = tuple(energy) if isinstance(energy, (list, tuple)) else energy
    energy = energy[0] if isinstance(energy, tuple) and len(energy) == 1 else energy
    if particle == "photon":
        file = shower_dataset(n_showers, seed=seed, energy=energy, data_dir=data_dir)
    elif particle in ("pion", "electron"):
        file = pion_dataset(n_showers, seed=seed, energy=energy, particle=particle, data_dir=data_dir)
    else:
        msg = f"particle must be 'photon' (ECAL), 'pion' or 'electron' (AHCAL); got {particle!r}"
        raise ValueError(msg)
    showers = read_showers(file)
    return ShowerSplit(file, showers, *split_indices(len(showers), seed=seed))


def shower_tokenizer_file(tokenizer_dir: str | os.PathLike, tokenizer: str, seed: int) -> Path:
    """Where notebook 06 saves its shower tokenizer ``tokenizer`` (e.g. "conditional-4096") of ``seed``."""
    return Path(tokenizer_dir) / f"showers_{tokenizer}_seed{seed}.pt"


def train_shower_tokenizer(
    data: ShowerSplit,
    training: TrainingConfig,
    *,
    tokenizer: str,
    vqvae_hidden_dim: int,
    vqvae_layers: int,
    vqvae_heads: int,
    run_dir: str | os.PathLike,
    progress: bool = True,
) -> Tokenizer:
    """Notebook 06's shower VQ-VAE ``tokenizer`` (the paper's: beta = 0.8, alpha = 10, dead codes replaced every
    100 batches), fitted in ``run_dir/vqvae`` on batches of showers of similar length; its parameters by name.

    The caller saves it (at :func:`shower_tokenizer_file`), under torchrun from one process.
    """
    preprocessing = ShowerPreprocessingConfig(geometry=data.showers.geometry)
    features, mask = preprocess_showers(data.showers, preprocessing)
    vqvae = VQVAEConfig(
        hidden_dim=vqvae_hidden_dim, n_layers=vqvae_layers, n_heads=vqvae_heads, alpha=10.0,
        quantizer=QuantizerConfig(beta=0.8, replace_every=100),
    )  # fmt: skip
    tok = build_tokenizer(
        tokenizer, preprocessing=preprocessing, vqvae=vqvae, device=training.device, seed=training.seed
    )
    train, val = (features[data.train_idx], mask[data.train_idx]), (features[data.val_idx], mask[data.val_idx])
    return fit_tokenizer(
        tok, train, val, training=training, run_dir=Path(run_dir) / "vqvae", length_buckets=True, progress=progress
    )


def train_shower_gpt(
    data: ShowerSplit,
    training: TrainingConfig,
    *,
    tokenizer_file: str | os.PathLike,
    token_dir: str | os.PathLike,
    embed_dim: int,
    n_heads: int,
    n_blocks: int,
    ffn_dim: int,
    run_dir: str | os.PathLike,
    progress: bool = True,
) -> tuple[GPT, TrainingResult]:
    """Notebook 06's GPT on the showers tokenized once with ``tokenizer_file``, trained in ``run_dir/gpt``."""
    if not Path(tokenizer_file).exists():
        msg = f"shower tokenizer not found: {tokenizer_file}; train it first (notebook 06, or omnijet train shower-tokenizer)"
        raise FileNotFoundError(msg)
    token_file = tokenized(data.file, tokenizer_file, token_dir)
    tokens = read_token_file(token_file)
    config = GPTConfig(
        codebook_size=tokens.codebook_size, embed_dim=embed_dim, n_heads=n_heads, n_blocks=n_blocks, ffn_dim=ffn_dim,
        max_length=tokens.sequences.shape[1],
    )  # fmt: skip
    train, val = tokens.sequences[data.train_idx], tokens.sequences[data.val_idx]
    return fit_gpt(
        config, train, val, training, Path(run_dir) / "gpt", progress=progress, tokenizer_file=tokenizer_file
    )  # the run records which tokenizer made its tokens


def parse_variant(variant: str) -> tuple[str, str]:
    """A direct-token model variant "<tokenization>/<order>" (e.g. "per_axis/energy") as (tokenization, order)."""
    tokenization, _, order = variant.partition("/")
    if tokenization not in TOKENIZATIONS or order not in ORDERS:
        msg = f"variant {variant!r} not understood: use '<tokenization>/<order>' with {TOKENIZATIONS} and {ORDERS}"
        raise ValueError(msg)
    return tokenization, order


def train_direct_shower_model(
    showers: Showers,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    training: TrainingConfig,
    *,
    variant: str,
    n_components: int,
    condition_on_n_hits: bool,
    energy_strategy_in_energy_order: str,
    energy_strategy_in_layer_order: str,
    anchor_noise: float,
    embed_dim: int,
    n_heads: int,
    n_blocks: int,
    ffn_dim: int,
    run_dir: str | os.PathLike,
    size_residuals: str = "normal",
    progress: bool = True,
) -> tuple[SpatialGPT, TrainingResult]:
    """Notebook 07's (and 08's) direct-token model ``variant`` ("<tokenization>/<order>"), trained in
    ``run_dir/<tokenization>_<order>``; its parameters by name (notebook 08 also sets ``size_residuals``)."""
    tokenization, order = parse_variant(variant)
    strategy = {"energy": energy_strategy_in_energy_order, "layer": energy_strategy_in_layer_order}[order]
    parsed = EnergyStrategy.parse(strategy)
    config = SpatialGPTConfig(
        tokenization=tokenization, n_components=n_components, embed_dim=embed_dim, n_heads=n_heads,
        n_blocks=n_blocks, ffn_dim=ffn_dim, condition_on_n_hits=condition_on_n_hits, order=order,
        energy_strategy=strategy, anchor_noise=anchor_noise if parsed.energy_budget and parsed.bounded else 0.0,
        geometry=showers.geometry, size_residuals=size_residuals,
    )  # fmt: skip
    return fit_spatial_gpt(
        config, hit_sequences(showers[train_idx], order=order), hit_sequences(showers[val_idx], order=order),
        training, Path(run_dir) / variant.replace("/", "_"), progress=progress,
    )  # fmt: skip
