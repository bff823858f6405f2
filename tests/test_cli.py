"""Bad command-line arguments: refused before anything is written, with an error naming the argument."""

import pytest

from omnijet_lib.cli import main
from omnijet_lib.data.pythia_jets import generate_jet_file

GENERATE = ["generate-jets", "--process", "qcd", "--n", "5", "--seed", "1", "--chunk-size", "5"]


def _refused(tmp_path, capsys, argv: list[str], argument: str) -> None:
    """``argv`` exits with argparse's usage error naming ``argument``, and writes nothing into tmp_path."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert f"argument {argument}: must be an integer >=" in capsys.readouterr().err
    assert not list(tmp_path.iterdir()), "nothing is written"


@pytest.mark.parametrize(
    ("argument", "value"),
    [("--n", "0"), ("--n", "-5"), ("--chunk-size", "0"), ("--seed", "-1"), ("--workers", "0"), ("--n", "abc")],
)
def test_generate_jets_refuses_bad_counts_and_seeds(tmp_path, capsys, argument, value):
    out = tmp_path / "jets" / "qcd.h5"
    _refused(tmp_path, capsys, [*GENERATE, "--out", str(out), argument, value], argument)


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("n_jets", 0), ("n_jets", -5), ("chunk_size", 0), ("seed", -1), ("n_workers", 0), ("n_jets", 2.5)],
)
def test_generate_jet_file_checks_every_argument_before_writing(tmp_path, keyword, value):
    """A refused run leaves no parts folder, which would make the corrected command "an unfinished run"."""
    arguments = {"n_jets": 5, "seed": 1, "chunk_size": 5, "n_workers": 1} | {keyword: value}
    out = tmp_path / "jets" / "qcd.h5"
    with pytest.raises(ValueError, match=f"^{keyword} must be an integer >= [01], got {value}$"):
        generate_jet_file("qcd", arguments.pop("n_jets"), out, progress=False, **arguments)
    with pytest.raises(ValueError, match="unknown process 'ttbar'"):
        generate_jet_file("ttbar", 5, out, seed=1)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("argument", "value"), [("--max-jets", "-5"), ("--max-jets", "0"), ("--step-size", "0")])
def test_import_jetclass_refuses_bad_counts(tmp_path, capsys, argument, value):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.root").touch()
    argv = ["import-jetclass", str(tmp_path / "in" / "a.root"), "--out", str(tmp_path / "out" / "x.h5")]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, argument, value])
    assert exit_.value.code == 2 and f"argument {argument}: must be an integer >= 1" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["in"]


@pytest.mark.parametrize("value", ["0", "-3"])
def test_tokenize_refuses_a_bad_chunk_size(tmp_path, capsys, value):
    argv = ["tokenize", str(tmp_path / "j.h5"), "--tokenizer", str(tmp_path / "t.pt"), "--out", str(tmp_path / "o.h5")]
    _refused(tmp_path, capsys, [*argv, "--chunk-size", value], "--chunk-size")


@pytest.mark.parametrize(("argument", "value"), [("--n", "0"), ("--seed", "-1"), ("--max-hits", "0")])
def test_simulate_showers_refuses_bad_counts(tmp_path, capsys, argument, value):
    argv = ["simulate-showers", "--n", "3", "--seed", "1", "--out", str(tmp_path / "s.h5")]
    _refused(tmp_path, capsys, [*argv, argument, value], argument)


def test_train_help_lists_every_parameter_of_the_notebooks_with_their_defaults(capsys):
    from omnijet_lib.cli import TRAINABLE
    from omnijet_lib.notebooks import notebook_parameters, project_root

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    assert set(TRAINABLE) == {
        "jet-tokenizer", "jet-gpt", "shower-tokenizer", "shower-gpt", "direct-showers", "hcal-showers", "fine-tuning"
    }  # fmt: skip
    for model, notebook in TRAINABLE.items():
        section = shown[shown.index(f"{model} (notebook {notebook})") :]
        for name, default in notebook_parameters(project_root() / "notebooks" / f"{notebook}.py").items():
            assert f"--{name} {default!r}" in section, (model, name)


def test_train_hcal_showers_trains_notebook_08_s_model_on_pions(tmp_path, capsys):
    from omnijet_lib.data.geometry import AHCAL
    from omnijet_lib.models.spatial_gpt import load_spatial_gpt

    tiny = ["--n_showers", "20", "--embed_dim", "8", "--n_heads", "2", "--n_blocks", "1", "--ffn_dim", "16",
            "--epochs", "1", "--batch_size", "8"]  # fmt: skip
    folders = ["--data_dir", str(tmp_path / "pions"), "--run_dir", str(tmp_path / "run")]
    assert main(["train", "hcal-showers", *tiny, *folders]) in (None, 0)
    assert list((tmp_path / "pions").glob("pions_10-100GeV_20_seed1.h5"))
    assert load_spatial_gpt(tmp_path / "run" / "per_axis_energy" / "best.pt").config.geometry == AHCAL
    assert "best epoch 1 of 1" in capsys.readouterr().out


def test_train_refuses_an_unknown_or_bad_parameter_before_it_trains(tmp_path, capsys):
    assert main(["train", "jet-gpt", "--epochs", "0", "--run_dir", str(tmp_path / "run")]) == 2
    assert "epochs" in capsys.readouterr().err
    parameters = tmp_path / "parameters.yaml"
    parameters.write_text("embed_dimension: 64\n")
    assert main(["train", "jet-gpt", "-f", str(parameters), "--run_dir", str(tmp_path / "run")]) == 2
    assert "embed_dimension" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_train_model_help_shows_each_parameter_with_the_comment_of_its_line(capsys):
    with pytest.raises(SystemExit):
        main(["train", "jet-tokenizer", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    assert "--n_processes VALUE > 1: train data-parallel under torchrun" in shown
    assert "(default: 1)" in shown
