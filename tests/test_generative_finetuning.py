"""Fine-tuning for generation: a jet GPT that starts from a pre-trained generative checkpoint.

Cross-data pre-training: a GPT trained on the sequences of domain A continues
next-token training on domain B ("finetune"), or trains a new generative head on
A's fixed backbone ("frozen"); "scratch" is the GPT as before.  Tiny GPTs, a few
hundred sequences: every test runs in seconds on one core.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import Killed, make_jets, markov_sequences, stop_at
from torch import nn

from omnijet_lib import workflows
from omnijet_lib.atomic import file_digest
from omnijet_lib.checkpoints import load_checkpoint
from omnijet_lib.data.jet_files import write_jets
from omnijet_lib.data.preprocessing import PreprocessingConfig, preprocess
from omnijet_lib.models.gpt import GPT, GPTConfig, check_compatible, incompatible_fields, load_gpt
from omnijet_lib.tokenizers import BinnedConfig, BinnedTokenizer
from omnijet_lib.tokenizers.registry import load_tokenizer
from omnijet_lib.tokenizers.token_dataset import TokenDataset
from omnijet_lib.tokenizers.token_files import tokenize_file
from omnijet_lib.tokenizers.tokens import PAD, START
from omnijet_lib.training import StepOutput, TrainingConfig, train
from omnijet_lib.training.gpt import fit_gpt, next_token_loss
from omnijet_lib.workflows import fit_jet_generator, tagging_data

SMALL = GPTConfig(codebook_size=40, embed_dim=32, n_heads=4, n_blocks=2, ffn_dim=64, max_length=24)
CPU = {"device": "cpu", "learning_rate": 3e-3}


def domain_b(n: int, config: GPTConfig, seed: int, width: int | None = None) -> np.ndarray:
    """Domain B: each code is its predecessor's - 3 (mod K) 70 % of the time (domain A's markov_sequences: + 1, 80 %)."""
    rng = np.random.default_rng(seed)
    k, width = config.codebook_size, width or config.max_length
    sequences = np.full((n, width), PAD)
    sequences[:, 0] = START
    for row in range(n):
        length = rng.integers(3, width - 1)
        code = rng.integers(k)
        for t in range(1, length + 1):
            sequences[row, t] = code + 1
            code = (code - 3) % k if rng.random() < 0.7 else rng.integers(k)
        sequences[row, length + 1] = config.stop_token
    return sequences


B_TRAIN, B_VAL = domain_b(200, SMALL, 10), domain_b(50, SMALL, 11)


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory):
    """Two files standing for two saved tokenizers: fit_gpt records the name and digest of the one it is given."""
    directory = tmp_path_factory.mktemp("tokenizers")
    files = {name: directory / f"{name}.pt" for name in ("tok_a", "tok_b")}
    for name, path in files.items():
        torch.save({"stands for": name}, path)
    return files


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, tokenizer_files):
    """A generative checkpoint trained two epochs on domain A, recording its tokenizer (tok_a)."""
    run = tmp_path_factory.mktemp("pretrained")
    training = TrainingConfig(epochs=2, batch_size=32, seed=0, **CPU)
    a_train, a_val = markov_sequences(200, SMALL, 0), markov_sequences(50, SMALL, 1)
    _, result = fit_gpt(SMALL, a_train, a_val, training, run, progress=False, tokenizer_file=tokenizer_files["tok_a"])
    return result.best_checkpoint


def loss_on(model: GPT, sequences: np.ndarray) -> float:
    """The per-token next-token cross-entropy of ``model`` on all of ``sequences`` at once."""
    with torch.no_grad():
        return next_token_loss(model.eval(), (torch.as_tensor(sequences),)).loss.item()


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


# ----------------------------------------------------------------------------- the strategies


def test_scratch_is_the_gpt_as_before(tmp_path):
    """The default and an explicit "scratch" train exactly what a call without the new arguments trains."""
    training = TrainingConfig(epochs=2, batch_size=32, checkpoint_every=3, **CPU)
    before, result_before = fit_gpt(SMALL, B_TRAIN, B_VAL, training, tmp_path / "plain", progress=False)
    after, result_after = fit_gpt(
        SMALL, B_TRAIN, B_VAL, training, tmp_path / "scratch", progress=False, init_from=None, strategy="scratch"
    )
    assert same_weights(before.state_dict(), after.state_dict())
    assert without_seconds(result_before.history) == without_seconds(result_after.history)
    for name in ("last.pt", "best.pt"):
        a, b = load_checkpoint(tmp_path / "plain" / name), load_checkpoint(tmp_path / "scratch" / name)
        assert a["describe"] == b["describe"] and set(a["describe"]) == {"model", "gpt_config", "data_fingerprint"}
        assert same_weights(a["model"], b["model"]) and a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()


def test_finetune_starts_from_every_pretrained_weight_and_trains_them_all(pretrained, tokenizer_files, tmp_path):
    # One batch per epoch: the first epoch's training loss is the loss before the first step.
    training = TrainingConfig(epochs=2, batch_size=256, **CPU)
    start = load_gpt(pretrained, device="cpu")
    model, result = fit_gpt(
        SMALL, B_TRAIN, B_VAL, training, tmp_path, progress=False,
        init_from=pretrained, strategy="finetune", tokenizer_file=tokenizer_files["tok_a"],
    )  # fmt: skip
    assert result.history[0]["train_loss"] == pytest.approx(loss_on(start, B_TRAIN), rel=1e-5)
    final = load_checkpoint(tmp_path / "last.pt")["model"]
    stored = load_checkpoint(pretrained)["model"]
    unchanged = [name for name in stored if torch.equal(final[name], stored[name])]
    assert not unchanged, f"fine-tuning trains every weight; unchanged: {unchanged}"
    # The run records where it started (provenance) and its tokenizer, in every checkpoint.
    for name in ("last.pt", "best.pt"):
        describe = load_checkpoint(tmp_path / name)["describe"]
        assert describe["strategy"] == "finetune" and describe["init_from"] == str(pretrained)
        assert describe["init_digest"] == file_digest(pretrained, length=16)
        assert describe["tokenizer"] == {"file": "tok_a.pt", "digest": file_digest(tokenizer_files["tok_a"], 16)}
    assert model.config == SMALL and all(p.requires_grad for p in model.parameters())


def test_frozen_keeps_the_backbone_bit_identical_and_trains_a_new_head(pretrained, tmp_path):
    training = TrainingConfig(epochs=2, batch_size=256, weight_decay=0.01, **CPU)
    with pytest.warns(UserWarning, match="records its tokenizer but this run does not"):
        fit_gpt(SMALL, B_TRAIN, B_VAL, training, tmp_path, progress=False, init_from=pretrained, strategy="frozen")
    stored = load_checkpoint(pretrained)["model"]
    final = load_checkpoint(tmp_path / "last.pt")["model"]
    backbone = [name for name in stored if name.startswith("backbone.")]
    head = [name for name in stored if name.startswith("head.")]
    assert backbone and head and len(backbone) + len(head) == len(final)
    assert all(torch.equal(final[name], stored[name]) for name in backbone), "the backbone stays as loaded"
    # A new head: at step 0 the model is the pre-trained backbone under the head a scratch run starts with.
    torch.manual_seed(training.seed)
    fresh = GPT(SMALL).state_dict()
    probe = GPT(SMALL)
    probe.load_state_dict({**stored, **{name: fresh[name] for name in head}})
    history = load_checkpoint(tmp_path / "last.pt")["history"]
    assert history[0]["train_loss"] == pytest.approx(loss_on(probe, B_TRAIN), rel=1e-5)
    assert history[0]["train_loss"] != pytest.approx(loss_on(load_gpt(pretrained, device="cpu"), B_TRAIN), rel=1e-3)
    for name in head:  # trained: neither the pre-trained head nor the fresh one
        assert not torch.equal(final[name], stored[name]) and not torch.equal(final[name], fresh[name]), name
    assert load_checkpoint(tmp_path / "best.pt")["describe"]["strategy"] == "frozen"


# ----------------------------------------------------------------------------- refused before training


def test_incompatible_checkpoints_are_refused_naming_the_field_and_both_values(pretrained, tmp_path):
    training = TrainingConfig(epochs=1, batch_size=32, **CPU)
    other_codes = GPTConfig(**{**SMALL.__dict__, "codebook_size": 30})
    run = tmp_path / "run"
    with pytest.raises(
        ValueError, match=r"(?s)pretrained.*best\.pt.*codebook_size: 40 in the checkpoint, 30 in this run"
    ):
        fit_gpt(other_codes, domain_b(50, other_codes, 0), domain_b(20, other_codes, 1), training, run,
                progress=False, init_from=pretrained, strategy="finetune")  # fmt: skip
    wider = GPTConfig(**{**SMALL.__dict__, "embed_dim": 64, "n_heads": 8})
    with pytest.raises(ValueError, match=r"(?s)embed_dim: 32 in the checkpoint, 64.*n_heads: 4 in the checkpoint, 8"):
        fit_gpt(wider, B_TRAIN, B_VAL, training, run, progress=False, init_from=pretrained, strategy="frozen")
    assert not run.exists(), "refused before anything was trained or written"


def test_a_longer_max_length_is_refused_only_with_the_multiplicity_token(pretrained, tmp_path):
    longer = GPTConfig(**{**SMALL.__dict__, "max_length": 30})
    assert incompatible_fields(SMALL, longer) == {}  # no weight depends on the length without positions
    counted = GPTConfig(**{**SMALL.__dict__, "multiplicity_token": True, "count_down": True})
    counted_longer = GPTConfig(**{**counted.__dict__, "max_length": 30})
    assert incompatible_fields(counted, counted_longer) == {"max_length": (24, 30)}
    with pytest.raises(ValueError, match="max_length: 24 in the checkpoint, 30 in this run.*multiplicity"):
        check_compatible(counted, counted_longer, "a.pt", what="this run")
    assert set(incompatible_fields(SMALL, counted)) == {"multiplicity_token", "count_down"}
    binned = GPTConfig(**{**SMALL.__dict__, "jet_pt_edges": (600.0, 700.0)})
    assert incompatible_fields(binned, GPTConfig(**{**binned.__dict__, "jet_pt_edges": (600.0, 750.0)})) == {
        "jet_pt_edges": ((600.0, 700.0), (600.0, 750.0))
    }
    # Longer sequences on B than on A: the checkpoint's weights serve them.
    training = TrainingConfig(epochs=1, batch_size=64, **CPU)
    with pytest.warns(UserWarning, match="records its tokenizer"):
        _, result = fit_gpt(
            longer, domain_b(100, longer, 2), domain_b(30, longer, 3), training, tmp_path, progress=False,
            init_from=pretrained, strategy="finetune",
        )  # fmt: skip
    assert len(result.history) == 1


def test_a_checkpoint_of_another_tokenizer_is_refused(pretrained, tokenizer_files, tmp_path):
    training = TrainingConfig(epochs=1, batch_size=32, **CPU)
    a, b = (file_digest(tokenizer_files[name], length=16) for name in ("tok_a", "tok_b"))
    with pytest.raises(ValueError, match=rf"another tokenizer: tok_a\.pt \(digest {a}\) in the checkpoint, tok_b\.pt \(digest {b}\)"):  # fmt: skip
        fit_gpt(SMALL, B_TRAIN, B_VAL, training, tmp_path / "run", progress=False,
                init_from=pretrained, strategy="finetune", tokenizer_file=tokenizer_files["tok_b"])  # fmt: skip
    assert not (tmp_path / "run").exists()
    with pytest.raises(FileNotFoundError, match="tokenizer file not found"):
        fit_gpt(SMALL, B_TRAIN, B_VAL, training, tmp_path / "run", progress=False, tokenizer_file=tmp_path / "no.pt")


def test_what_is_not_a_gpt_checkpoint_is_refused(pretrained, tmp_path):
    training = TrainingConfig(epochs=1, batch_size=32, **CPU)

    def fine_tune(init_from, strategy="finetune"):
        return fit_gpt(SMALL, B_TRAIN, B_VAL, training, tmp_path / "run", progress=False,
                       init_from=init_from, strategy=strategy)  # fmt: skip

    def mse(model: nn.Module, batch) -> StepOutput:
        return StepOutput(((model(batch[0]) - batch[1]) ** 2).mean(), {})

    x = torch.randn(32, 3)
    other = train(nn.Linear(3, 1), (x, x[:, :1]), (x, x[:, :1]), mse, training, tmp_path / "mlp",
                  describe={"kind": "linear"}, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"mlp.last\.pt is not a GPT checkpoint"):
        fine_tune(other.last_checkpoint)
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a checkpoint written by omnijet_lib.training"):
        fine_tune(tmp_path / "text.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        fine_tune(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="'finetune' needs a generative checkpoint"):
        fine_tune(None)
    with pytest.raises(ValueError, match="with strategy 'scratch'"):
        fine_tune(pretrained, "scratch")
    with pytest.raises(ValueError, match="unknown strategy 'linear_probe'"):
        fine_tune(pretrained, "linear_probe")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- resume


@pytest.mark.parametrize(
    ("strategy", "stop", "error", "saved"),
    [("finetune", 5, KeyboardInterrupt, 5), ("frozen", 9, KeyboardInterrupt, 9), ("finetune", 11, Killed, 9)],
    ids=["finetune-ctrl-c", "frozen-ctrl-c", "finetune-killed"],
)
def test_interrupted_fine_tuning_resumes_to_the_uninterrupted_state(pretrained, tmp_path, strategy, stop, error, saved):
    """Resumed from its own last.pt -- after Ctrl-C, or kill -9 (an older checkpoint) -- not from the pre-trained one."""
    training = TrainingConfig(epochs=2, batch_size=32, checkpoint_every=3, **CPU)  # 7 steps an epoch

    def run(run_dir, **kwargs):
        with pytest.warns(UserWarning, match="records its tokenizer"):
            return fit_gpt(SMALL, B_TRAIN, B_VAL, training, run_dir, progress=False,
                           init_from=pretrained, strategy=strategy, **kwargs)  # fmt: skip

    reference, reference_result = run(tmp_path / "reference")
    with pytest.raises(error):
        run(tmp_path / "resumed", on_step=stop_at(stop, error))
    # Ctrl-C saves where it stopped; killed at step 11, the last checkpoint is the periodic one of step 9.
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["global_step"] == saved
    resumed, resumed_result = run(tmp_path / "resumed")
    assert same_weights(reference.state_dict(), resumed.state_dict())
    assert without_seconds(reference_result.history) == without_seconds(resumed_result.history)
    for name in ("last.pt", "best.pt"):
        a, b = load_checkpoint(tmp_path / "reference" / name), load_checkpoint(tmp_path / "resumed" / name)
        assert same_weights(a["model"], b["model"]) and a["describe"] == b["describe"]


def test_a_run_cannot_continue_from_another_start(pretrained, tmp_path):
    """A scratch run's folder is not continued as a fine-tuning (or the reverse): the description differs."""
    training = TrainingConfig(epochs=1, batch_size=32, **CPU)
    fit_gpt(SMALL, B_TRAIN, B_VAL, training, tmp_path, progress=False)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="init_digest: '\\(absent\\)' in the checkpoint"):
        fit_gpt(SMALL, B_TRAIN, B_VAL, training, tmp_path, progress=False, init_from=pretrained, strategy="finetune")


def test_a_run_begun_before_runs_recorded_their_tokenizer_still_resumes(tokenizer_files, tmp_path):
    training = TrainingConfig(epochs=1, batch_size=32, **CPU)
    fit_gpt(SMALL, B_TRAIN, B_VAL, training, tmp_path, progress=False)  # described without a tokenizer
    more = TrainingConfig(epochs=2, batch_size=32, **CPU)
    _, result = fit_gpt(SMALL, B_TRAIN, B_VAL, more, tmp_path, progress=False, tokenizer_file=tokenizer_files["tok_a"])
    assert len(result.history) == 2 and "tokenizer" not in load_checkpoint(tmp_path / "last.pt")["describe"]


# ----------------------------------------------------------------------------- through fit_jet_generator


@pytest.fixture(scope="module")
def two_domains(tmp_path_factory):
    """Synthetic jets of two domains, tokenized by one saved binned tokenizer (27 codes, 12 constituents);
    a second tokenizer of the same codebook size but other bins, and one of another codebook size."""
    directory = tmp_path_factory.mktemp("domains")
    preprocessing = PreprocessingConfig(max_constituents=12)
    rng = np.random.default_rng(0)
    jets = {
        "a": make_jets(rng.integers(2, 16, 240), seed=1, spread=0.4),
        "b": make_jets(rng.integers(2, 16, 240), seed=2, spread=0.2),
    }

    def saved_tokenizer(name, bins, fitted_on):
        pre = preprocess(jets[fitted_on], preprocessing)
        tokenizer = BinnedTokenizer(BinnedConfig(bins), preprocessing).fit(pre.features, pre.mask)
        return tokenizer.save(directory / f"{name}.pt")

    tokenizers = {
        "tok": saved_tokenizer("tok", (3, 3, 3), "a"),
        "tok_b": saved_tokenizer("tok_b", (3, 3, 3), "b"),  # 27 codes too, other bins
        "tok_36": saved_tokenizer("tok_36", (4, 3, 3), "a"),
    }

    def token_data(domain, tokenizer):
        jet_file = directory / f"jets_{domain}.h5"
        if not jet_file.exists():
            write_jets(jet_file, jets[domain])
        tokens = tokenize_file(jet_file, tokenizers[tokenizer], directory / f"{domain}_{tokenizer}.h5", progress=False)
        return TokenDataset(tokens, progress=False), load_tokenizer(tokenizers[tokenizer], device="cpu")

    token_data.jet_files = {domain: directory / f"jets_{domain}.h5" for domain in jets}
    token_data.tokenizers = tokenizers
    return token_data


def test_fit_jet_generator_fine_tunes_across_domains_and_checks_the_tokenizer(two_domains, tmp_path):
    """Pre-trained on domain A, fine-tuned on B: the pT bins stay A's; B's tokens of another tokenizer are refused."""
    gpt = GPTConfig(embed_dim=16, n_heads=2, n_blocks=1, ffn_dim=32, multiplicity_token=True, count_down=True)
    training = TrainingConfig(epochs=1, batch_size=64, **CPU)
    train_idx, val_idx = np.arange(200), np.arange(200, 240)

    def fit(domain, tokenizer, run, **kwargs):
        dataset, tok = two_domains(domain, tokenizer)
        return fit_jet_generator(
            dataset, train_idx, val_idx, tok, gpt, training, tmp_path / run, jet_pt_bins=3, progress=False, **kwargs
        )

    generator_a, _ = fit("a", "tok", "a")
    checkpoint = tmp_path / "a" / "best.pt"
    recorded = load_checkpoint(checkpoint)["describe"]["tokenizer"]
    assert recorded["file"] == "tok.pt" and len(recorded["digest"]) == 16  # scratch runs record it from now on

    generator_b, result = fit("b", "tok", "b", init_from=checkpoint, strategy="finetune")
    assert generator_b.model.config == generator_a.model.config  # A's jet-pT edges, not B's quantiles
    describe = load_checkpoint(result.best_checkpoint)["describe"]
    assert describe["tokenizer"] == recorded and describe["strategy"] == "finetune"
    jets, _ = generator_b.generate(20, seed=0, progress=False)
    assert len(jets) > 0

    with pytest.raises(ValueError, match=r"another tokenizer: tok\.pt .* in the checkpoint, tok_b\.pt"):
        fit("b", "tok_b", "b_other_tokenizer", init_from=checkpoint, strategy="frozen")
    with pytest.raises(ValueError, match="codebook_size: 27 in the checkpoint, 36 in this run"):
        fit("b", "tok_36", "b_other_codebook", init_from=checkpoint, strategy="finetune")
    with pytest.raises(ValueError, match="jet_pt_edges: "):
        dataset, tok = two_domains("b", "tok")
        fit_jet_generator(dataset, train_idx, val_idx, tok, gpt, training, tmp_path / "b_bins", jet_pt_bins=4,
                          progress=False, init_from=checkpoint, strategy="finetune")  # fmt: skip


def test_tagging_data_refuses_a_backbone_pre_trained_on_another_tokenizer(two_domains, tmp_path, monkeypatch):
    """Notebook 05's labelled jets: the backbone must have read this tokenizer's codes, not only as many of them."""
    gpt = GPTConfig(embed_dim=16, n_heads=2, n_blocks=1, ffn_dim=32)
    dataset, tok_b = two_domains("a", "tok_b")
    two_domains("b", "tok_b")  # writes domain B's jet file too
    fit_jet_generator(dataset, np.arange(200), np.arange(200, 240), tok_b, gpt, TrainingConfig(epochs=1, **CPU),
                      tmp_path / "gpt", progress=False)  # fmt: skip
    # tagging_data reads <name>_seed<seed>.pt and the top and QCD files of the data folder (here: A's and B's jets)
    tokenizer_dir = tmp_path / "tokenizers"
    tokenizer_dir.mkdir()
    for name in ("tok", "tok_b"):
        shutil.copy(two_domains.tokenizers[name], tokenizer_dir / f"{name}_seed1.pt")
    files = {"top": two_domains.jet_files["a"], "qcd": two_domains.jet_files["b"]}
    monkeypatch.setattr(workflows, "jet_dataset", lambda *args, **kwargs: files)

    def labelled(tokenizer):
        return tagging_data(
            n_jets=240, seed=1, data_dir=tmp_path, tokenizer=tokenizer, tokenizer_dir=tokenizer_dir,
            token_dir=tmp_path / "tokens", pretrained=tmp_path / "gpt" / "best.pt", n_val=30, n_test=40,
        )  # fmt: skip

    with pytest.raises(
        ValueError, match=r"another tokenizer: tok_b\.pt .* in the checkpoint, tok_seed1\.pt .* these jets"
    ):
        labelled("tok")  # 27 codes as the backbone's, other bins
    data, config = labelled("tok_b")
    assert config.codebook_size == 27
    assert (len(data.train_labels), len(data.val_labels), len(data.test_labels)) == (288, 30, 40)  # 60 % of 480
    assert set(np.unique(data.train_labels)) == {0, 1}
