import numpy as np
import pytest
import torch

from omnijet_lib.models.classifiers import (
    DeepSets,
    DeepSetsConfig,
    TransformerClassifier,
    TransformerClassifierConfig,
)

MODELS = {
    "deepsets": lambda: DeepSets(DeepSetsConfig(n_classes=3)),
    "transformer": lambda: TransformerClassifier(TransformerClassifierConfig(dim=32, heads=4, blocks=2, n_classes=3)),
}


def padded_batch(seed: int = 0, n_jets: int = 5, length: int = 12):
    """Random constituents with a leading-block mask, one jet left without constituents."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n_jets, length, 3, generator=generator)
    counts = torch.randint(1, length, (n_jets,), generator=generator)
    counts[-1] = 0
    mask = torch.arange(length)[None, :] < counts[:, None]
    return x, mask


@pytest.fixture(params=list(MODELS))
def model(request):
    torch.manual_seed(0)
    return MODELS[request.param]().eval()


def test_output_shape(model):
    x, mask = padded_batch()
    logits = model(x, mask)
    assert logits.shape == (5, 3)
    assert torch.isfinite(logits).all()  # a jet without constituents too


def test_padding_never_changes_the_output(model):
    x, mask = padded_batch()
    logits = model(x, mask)
    changed = x.clone()
    changed[~mask] = float("nan")  # whatever sits in the padding, even NaN
    assert torch.equal(model(changed, mask), logits)
    longer = torch.cat([x, 100 * torch.randn(5, 7, 3)], dim=1)
    longer_mask = torch.cat([mask, torch.zeros(5, 7, dtype=torch.bool)], dim=1)
    # More padded slots change the length of sums and attention rows, hence float rounding, not the result.
    torch.testing.assert_close(model(longer, longer_mask), logits, rtol=0, atol=1e-6)


def test_constituent_order_does_not_matter(model):
    x, mask = padded_batch()
    logits = model(x, mask)
    order = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model(x[:, order], mask[:, order]), logits, rtol=0, atol=1e-5)


def test_bad_shapes_are_refused(model):
    x, mask = padded_batch()
    with pytest.raises(ValueError, match="expected x"):
        model(x[..., :2], mask)
    with pytest.raises(ValueError, match="mask must be bool"):
        model(x, mask.float())
    with pytest.raises(ValueError, match="multiple of heads"):
        TransformerClassifierConfig(dim=30, heads=4)


# --- classifier tests ------------------------------------------------------------


def test_split_indices_are_disjoint_and_cover_everything():
    from omnijet_lib.data.splits import split_indices

    train, val, test = split_indices(101, fractions=(0.6, 0.2, 0.2), seed=3)
    assert (len(train), len(val), len(test)) == (61, 20, 20)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val, test])), np.arange(101))
    again = split_indices(101, fractions=(0.6, 0.2, 0.2), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    with pytest.raises(ValueError, match="summing to 1"):
        split_indices(100, fractions=(0.6, 0.3, 0.3))
    with pytest.raises(ValueError, match="too few"):
        split_indices(2)


def synthetic_jets(n: int, *, separation: float, n_classes: int = 2, length: int = 8, seed: int = 0):
    """Padded Gaussian constituents; class k has its first feature shifted by k * separation."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    counts = rng.integers(2, length + 1, n)
    mask = np.arange(length)[None, :] < counts[:, None]
    x = rng.normal(0, 1, (n, length, 3)).astype(np.float32)
    x[..., 0] += separation * labels[:, None]
    x[~mask] = 0.0
    return x, mask, labels


FAST = dict(epochs=4, batch_size=64)  # a few seconds per training on 2 CPU cores


def test_train_classifier_separates_an_easy_problem(tmp_path):
    from omnijet_lib.checkpoints import load_checkpoint
    from omnijet_lib.metrics.classifier_test import ClassifierResult, train_classifier
    from omnijet_lib.training import TrainingConfig

    x, mask, labels = synthetic_jets(1000, separation=2.0)
    result = train_classifier(x, mask, labels, training=TrainingConfig(**FAST), run_dir=tmp_path, progress=False)
    assert isinstance(result, ClassifierResult)
    assert result.accuracy > 0.9 and result.auc > 0.9
    assert result.test_scores.shape == (200, 2) and result.test_labels.shape == (200,)
    np.testing.assert_allclose(result.test_scores.sum(axis=1), 1.0, rtol=1e-5)
    assert 0 <= result.best_epoch < FAST["epochs"]
    # The checkpoint says what it holds.
    describe = load_checkpoint(tmp_path / "best.pt")["describe"]
    assert describe["classifier"] == "DeepSets" and describe["config"]["particle_layers"] == (100, 100, 256)


def test_train_classifier_sees_nothing_in_identically_distributed_classes(tmp_path):
    from omnijet_lib.metrics.classifier_test import train_classifier
    from omnijet_lib.training import TrainingConfig

    x, mask, labels = synthetic_jets(2000, separation=0.0, seed=1)
    result = train_classifier(x, mask, labels, training=TrainingConfig(**FAST), run_dir=tmp_path, progress=False)
    assert abs(result.auc - 0.5) < 0.1  # 400 test jets: the AUC's statistical spread is ~0.03


def test_transformer_on_three_classes_from_torch_inputs(tmp_path):
    from omnijet_lib.metrics.classifier_test import train_classifier
    from omnijet_lib.training import TrainingConfig

    x, mask, labels = synthetic_jets(900, separation=2.0, n_classes=3, seed=2)
    result = train_classifier(
        torch.from_numpy(x),
        torch.from_numpy(mask),
        torch.from_numpy(labels),
        model="transformer",
        training=TrainingConfig(**FAST),
        run_dir=tmp_path,
        progress=False,
    )
    assert result.auc is None  # AUC only for two classes
    assert result.test_scores.shape == (180, 3)
    assert result.accuracy > 0.8


def test_train_classifier_refuses_bad_input(tmp_path):
    from omnijet_lib.errors import BadDataError
    from omnijet_lib.metrics.classifier_test import train_classifier
    from omnijet_lib.training import TrainingConfig

    x, mask, labels = synthetic_jets(100, separation=1.0)
    training = TrainingConfig(**FAST)
    with pytest.raises(ValueError, match="unknown classifier 'deepset'"):
        train_classifier(x, mask, labels, model="deepset", training=training, run_dir=tmp_path)
    with pytest.raises(ValueError, match="at least two classes"):
        train_classifier(x, mask, np.zeros(100, int), training=training, run_dir=tmp_path)
    with pytest.raises(ValueError, match=r"got \[0, 8\]"):  # JetClass indices of QCD and Tbqq
        train_classifier(x, mask, 8 * labels, training=training, run_dir=tmp_path)
    with pytest.raises(ValueError, match="expected x"):
        train_classifier(x, mask[:, :4], labels, training=training, run_dir=tmp_path)
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(BadDataError, match="real"):
        train_classifier(bad, mask, labels, training=training, run_dir=tmp_path)
    assert not (tmp_path / "last.pt").exists()  # every check came before any training


def test_lost_information_is_exactly_zero_for_identical_inputs(tmp_path):
    from omnijet_lib.metrics.classifier_test import lost_information
    from omnijet_lib.training import TrainingConfig

    x, mask, labels = synthetic_jets(500, separation=0.7, seed=3)
    # A ready module (the generation test's small DeepSets) is copied for each training, not trained twice.
    model = DeepSets(DeepSetsConfig(particle_layers=(10, 10, 10)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = lost_information(
        x, x.copy(), mask, mask.copy(), labels, model=model, training=TrainingConfig(**FAST), run_dir=tmp_path,
        progress=False,
    )  # fmt: skip
    assert set(result) == {
        "accuracy_original", "accuracy_reconstructed", "accuracy_gap", "auc_original", "auc_reconstructed", "auc_gap",
    }  # fmt: skip
    # Same split, seed and initial weights: the two trainings are the same computation.
    assert result["accuracy_gap"] == 0.0 and result["auc_gap"] == 0.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert (tmp_path / "original" / "best.pt").exists() and (tmp_path / "reconstructed" / "best.pt").exists()


def test_lost_information_sees_destroyed_features_of_real_jets(pythia_jets, tmp_path):
    from omnijet_lib.data.jets import concatenate
    from omnijet_lib.data.preprocessing import preprocess
    from omnijet_lib.metrics.classifier_test import lost_information
    from omnijet_lib.training import TrainingConfig

    pre = preprocess(concatenate([pythia_jets["top"], pythia_jets["qcd"]]))
    labels = np.r_[np.ones(len(pythia_jets["top"]), int), np.zeros(len(pythia_jets["qcd"]), int)]
    # A "tokenizer" that keeps the multiplicity but replaces every constituent by noise.
    destroyed = pre.features.copy()
    destroyed[pre.mask] = np.random.default_rng(0).normal(0, 1, (pre.mask.sum(), 3))
    result = lost_information(
        pre.features, destroyed, pre.mask, pre.mask, labels,
        training=TrainingConfig(epochs=10, batch_size=64), run_dir=tmp_path, progress=False,
    )  # fmt: skip
    # Top vs QCD from the constituents: ~0.85 accuracy; from the multiplicity alone: ~0.65.
    assert result["accuracy_original"] > 0.75
    assert result["accuracy_gap"] > 0.08 and result["auc_gap"] > 0.08
