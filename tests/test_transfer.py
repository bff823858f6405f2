"""Transfer learning: heads and masking, weight loading, frozen backbones, tagging metrics, resumable scans."""

import numpy as np
import pytest
import torch
from conftest import markov_sequences

from omnijet_lib import transfer
from omnijet_lib.metrics.tagging import background_rejection, tagging_metrics
from omnijet_lib.models.gpt import GPTConfig
from omnijet_lib.models.token_classifier import TokenClassifier, TokenClassifierConfig
from omnijet_lib.tokenizers.tokens import PAD
from omnijet_lib.training import TrainingConfig
from omnijet_lib.training.gpt import fit_gpt
from omnijet_lib.transfer import TaggingData, build_tagger, load_backbone, patience_for, run_scan, train_tagger

GPT = GPTConfig(codebook_size=40, embed_dim=32, n_heads=4, n_blocks=2, ffn_dim=64, max_length=24)
CPU = dict(device="cpu", batch_size=32)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A generative checkpoint of the small GPT, trained one epoch."""
    run = tmp_path_factory.mktemp("gpt")
    training = TrainingConfig(epochs=1, learning_rate=3e-3, seed=0, **CPU)
    _, result = fit_gpt(GPT, markov_sequences(200, GPT, 0), markov_sequences(50, GPT, 1), training, run, progress=False)
    return result.best_checkpoint


def labelled(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 1: Markov sequences; class 0: the same with their tokens shuffled within the sequence."""
    sequences = markov_sequences(n, GPT, seed)
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    for row in np.flatnonzero(labels == 0):
        n_codes = int(((sequences[row] > 0) & (sequences[row] < GPT.stop_token)).sum())
        sequences[row, 1 : n_codes + 1] = rng.permutation(sequences[row, 1 : n_codes + 1])
    return sequences, labels


@pytest.fixture(scope="module")
def data():
    parts = [labelled(n, seed) for n, seed in ((300, 10), (60, 11), (80, 12))]
    return TaggingData(*(a for part in parts for a in part))


@pytest.mark.parametrize("head", ["sum", "class_attention"])
def test_heads_give_one_logit_per_class_and_ignore_padding(head):
    torch.manual_seed(0)
    model = TokenClassifier(TokenClassifierConfig(gpt=GPT, head=head, n_classes=3)).eval()
    sequences = torch.as_tensor(markov_sequences(4, GPT, 0))
    with torch.no_grad():
        logits = model(sequences)
        alone = torch.cat([model(sequences[i : i + 1]) for i in range(4)])  # no padding from longer neighbours
        wider = model(torch.cat([sequences, torch.full((4, 0), PAD)], dim=1))
    assert logits.shape == (4, 3)
    assert torch.allclose(logits, alone, atol=1e-5) and torch.allclose(logits, wider)


def test_start_and_stop_are_not_summed_as_constituents():
    torch.manual_seed(0)
    model = TokenClassifier(TokenClassifierConfig(gpt=GPT)).eval()
    sequences = torch.as_tensor(markov_sequences(2, GPT, 3))
    without_stop = sequences.clone()
    without_stop[without_stop == GPT.stop_token] = PAD
    with torch.no_grad():
        # STOP sits after every constituent, so under the causal mask it changes nothing but itself
        assert torch.allclose(model(sequences), model(without_stop), atol=1e-5)
    with pytest.raises(ValueError, match="at least one constituent"):
        model(torch.tensor([[0, GPT.stop_token, PAD]]))


def test_generative_checkpoint_loads_into_the_classifier(pretrained):
    model = TokenClassifier(TokenClassifierConfig(gpt=GPT))
    loaded = load_backbone(model, pretrained)
    assert set(loaded) == {f"backbone.{k}" for k in model.backbone.state_dict()}
    stored = torch.load(pretrained, weights_only=True)["model"]
    for name in loaded:
        assert torch.equal(model.state_dict()[name], stored[name])


def test_mismatched_checkpoints_fail_clearly(pretrained, tmp_path):
    wider = TokenClassifier(TokenClassifierConfig(gpt=GPTConfig(**{**GPT.__dict__, "embed_dim": 64})))
    with pytest.raises(ValueError, match="another config.*embed_dim"):
        load_backbone(wider, pretrained)
    checkpoint = torch.load(pretrained, weights_only=True)
    del checkpoint["model"]["backbone.blocks.1.ffn.0.weight"]
    broken = tmp_path / "broken.pt"
    torch.save(checkpoint, broken)
    model = TokenClassifier(TokenClassifierConfig(gpt=GPT))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"missing \['blocks.1.ffn.0.weight'\]"):
        load_backbone(model, broken)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "nothing loaded halfway"
    with pytest.raises(ValueError, match="needs a pretrained"):
        build_tagger(TokenClassifierConfig(gpt=GPT), "finetune")


@pytest.mark.parametrize("strategy", ["frozen", "finetune", "scratch"])
def test_strategies_train_what_they_should(strategy, pretrained, data, tmp_path):
    config = TokenClassifierConfig(gpt=GPT)
    training = TrainingConfig(epochs=2, learning_rate=1e-3, weight_decay=0.01, **CPU)
    row = train_tagger(
        data, config, size=64, strategy=strategy, seed=0, pretrained=pretrained, training=training,
        run_dir=tmp_path / strategy, progress=False,
    )  # fmt: skip
    assert {"accuracy", "auc", "rejection_30", "rejection_50"} <= set(row) and row["size"] == 64
    final = torch.load(tmp_path / strategy / "last.pt", weights_only=True)["model"]
    initial = torch.load(pretrained, weights_only=True)["model"]
    backbone = [k for k in final if k.startswith("backbone.")]
    unchanged = [torch.equal(final[k], initial[k]) for k in backbone]
    if strategy == "frozen":
        assert all(unchanged), "a frozen backbone stays exactly as loaded"
    else:
        assert not any(unchanged)
    assert not torch.equal(final["head.out.weight"], TokenClassifier(config).state_dict()["head.out.weight"])


def test_training_subsets_are_balanced_and_seeded(data):
    subset = data.training_subset(51, seed=3)
    assert len(subset) == len(set(subset)) == 51
    assert np.bincount(data.train_labels[subset]).tolist() == [25, 26]
    assert np.array_equal(subset, data.training_subset(51, seed=3))
    assert not np.array_equal(subset, data.training_subset(51, seed=4))
    with pytest.raises(ValueError, match="pool holds"):
        data.training_subset(1000, seed=0)


def test_tagging_metrics():
    labels = np.repeat([0, 1], 5000)
    perfect = tagging_metrics(labels, labels * 0.8 + 0.1)
    assert perfect["accuracy"] == 1 and perfect["auc"] == 1 and perfect["rejection_50"] == float("inf")
    random = tagging_metrics(labels, np.random.default_rng(0).random(len(labels)))
    assert abs(random["auc"] - 0.5) < 0.02
    assert random["rejection_50"] == pytest.approx(2.0, rel=0.05)  # a random tagger keeps half the background
    assert random["rejection_30"] == pytest.approx(1 / 0.3, rel=0.08)
    with pytest.raises(ValueError, match="both classes"):
        tagging_metrics(np.zeros(4), np.ones(4))
    with pytest.raises(ValueError, match="signal_efficiency"):
        background_rejection(labels, labels, 0)


def test_patience_depends_on_training_size():
    assert [patience_for(n) for n in (100, 10_000, 100_000, 2_000_000)] == [20, 20, 10, 5]


def test_a_resumed_scan_skips_finished_cells(pretrained, data, tmp_path, monkeypatch):
    trained = []
    original = transfer.train_tagger

    def counting(*args, **kwargs):
        trained.append((kwargs["size"], kwargs["strategy"], kwargs["seed"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(transfer, "train_tagger", counting)
    config = TokenClassifierConfig(gpt=GPT)
    training = TrainingConfig(epochs=1, **CPU)
    scan = dict(pretrained=pretrained, training=training, scan_dir=tmp_path / "scan", progress=False)
    first = run_scan(data, config, sizes=[32], strategies=["scratch", "frozen"], seeds=[0], **scan)
    assert len(first) == 2 and len(trained) == 2
    rows = run_scan(data, config, sizes=[32, 64], strategies=["scratch", "frozen"], seeds=[0], **scan)
    assert trained[2:] == [(64, "scratch", 0), (64, "frozen", 0)], "only the new cells train"
    assert rows[:2] == first
    assert [(r["size"], r["strategy"]) for r in rows] == [
        (32, "scratch"),
        (32, "frozen"),
        (64, "scratch"),
        (64, "frozen"),
    ]
    with pytest.raises(ValueError, match="other settings"):
        run_scan(
            data,
            TokenClassifierConfig(gpt=GPT, head="class_attention"),
            sizes=[32],
            strategies=["scratch"],
            seeds=[0],
            **scan,
        )


def test_a_backbone_conditioned_on_the_jet_pt_reads_it_when_tagging(tmp_path):
    """The label is the jet pT bin alone (sequences carry no sign of it): only a tagger that reads it can learn it."""
    config = TokenClassifierConfig(gpt=GPTConfig(**{**GPT.__dict__, "jet_pt_edges": (600.0,)}))
    rng = np.random.default_rng(0)
    parts = []
    for n, seed in ((400, 20), (100, 21), (200, 22)):
        jet_pt = rng.uniform(500, 700, n).astype(np.float32)
        parts.append((markov_sequences(n, GPT, seed), (jet_pt > 600).astype(np.int64), jet_pt))
    (train_x, train_y, train_pt), (val_x, val_y, val_pt), (test_x, test_y, test_pt) = parts
    data = TaggingData(
        train_x, train_y, val_x, val_y, test_x, test_y, train_jet_pt=train_pt, val_jet_pt=val_pt, test_jet_pt=test_pt
    )
    training = TrainingConfig(epochs=6, learning_rate=3e-3, **CPU)
    row = train_tagger(
        data, config, size=300, strategy="scratch", seed=0, pretrained=None, training=training,
        run_dir=tmp_path / "run", progress=False,
    )  # fmt: skip
    assert row["accuracy"] > 0.9
    without = TaggingData(train_x, train_y, val_x, val_y, test_x, test_y)
    with pytest.raises(ValueError, match="conditioned on the jet pT"):
        train_tagger(
            without, config, size=300, strategy="scratch", seed=0, pretrained=None, training=training,
            run_dir=tmp_path / "other", progress=False,
        )  # fmt: skip
