"""Parameter profiles, list parameters and the runner's parameter files: notebooks run the same however called."""

import re
from pathlib import Path

import pytest

from omnijet_lib.errors import BadParameterError, UnknownParameterError
from omnijet_lib.notebooks import (
    check_parameters,
    list_parameter,
    notebook_parameters,
    profile_file,
    read_parameter_file,
    read_profile,
    run_notebook,
)

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
PROFILES = ("quick", "cpu", "paper")


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("profile", PROFILES)
def test_every_notebook_has_a_file_in_every_profile_naming_only_its_parameters(profile):
    for notebook in NOTEBOOKS:
        values = read_profile(profile, notebook)
        unknown = set(values) - set(notebook_parameters(notebook))
        assert not unknown, f"{profile_file(profile, notebook)} sets unknown parameters {sorted(unknown)}"
        assert values, f"{profile}/{notebook.stem}.yaml is empty"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_passes_the_parameter_checks(profile):
    for notebook in NOTEBOOKS:
        check_parameters(read_profile(profile, notebook), notebook)


def test_cpu_profile_is_the_notebooks_defaults():
    for notebook in NOTEBOOKS:
        defaults = {name: _plain(value) for name, value in notebook_parameters(notebook).items()}
        assert read_profile("cpu", notebook) == defaults, f"profiles/cpu/{notebook.stem}.yaml differs from its defaults"


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_a_profile_is_one_consistent_main_job(profile):
    """Later notebooks read what earlier ones of the same profile write, never another profile's files."""
    p = {nb.stem: read_profile(profile, nb) for nb in NOTEBOOKS}
    trained = p["02_tokenization_quality"]["tokenizers"]
    assert set(p["03_token_space"]["tokenizers"]) <= set(trained)
    for stem in ("03_token_space", "04_generation", "05_transfer_learning", "09_cross_data"):
        assert p[stem]["n_jets"] == p["02_tokenization_quality"]["n_jets"] == p["01_data"]["n_jets"]
    assert p["04_generation"]["tokenizer"] in trained and p["05_transfer_learning"]["tokenizer"] in trained
    assert p["05_transfer_learning"]["pretrained"] == f"{p['04_generation']['run_dir']}/gpt/best.pt"
    showers = p["06_calorimeter_showers"]
    assert p["07_direct_spatial_tokens"]["n_showers"] == showers["n_showers"]
    assert p["07_direct_spatial_tokens"]["vqvae_checkpoint"] == f"{showers['run_dir']}/gpt/best.pt"
    tokenizer_file = f"{showers['tokenizer_dir']}/showers_{showers['tokenizer']}_seed1.pt"
    assert p["07_direct_spatial_tokens"]["vqvae_tokenizer"] == tokenizer_file
    assert p["08_hcal_pions"]["ecal_metrics"] == f"{p['07_direct_spatial_tokens']['output_dir']}/metrics.json"
    # its own folders: a profile's small or large models never overwrite the defaults' files
    for stem, values in p.items():
        for name in ("output_dir", "run_dir", "scan_dir", "tokenizer_dir", "token_dir", "generated_dir"):
            if name in values:
                assert f"/{profile}/" in f"/{values[name]}", f"{profile}/{stem}: {name} = {values[name]}"


def test_list_parameter_reads_what_papermill_passes():
    assert list_parameter(["a", "b"], "tokenizers") == ["a", "b"]
    assert list_parameter(("a",), "tokenizers") == ["a"]
    assert list_parameter('["binned-20", "conditional-8192"]', "tokenizers") == ["binned-20", "conditional-8192"]
    assert list_parameter("binned-20, conditional-8192", "tokenizers") == ["binned-20", "conditional-8192"]
    assert list_parameter("conditional-8192", "tokenizers") == ["conditional-8192"]
    assert list_parameter("100,300", "sizes") == [100, 300]
    assert list_parameter("[10.0, 100.0]", "energy") == [10.0, 100.0]
    assert list_parameter(50.0, "energy") == [50.0]
    assert list_parameter("[]", "classifiers") == []
    with pytest.raises(ValueError, match=r"parameter 'tokenizers'.*\['a', 'b'\]"):
        list_parameter("['a', 'b']", "tokenizers")  # not JSON: a clear error, not 10 one-letter names
    with pytest.raises(ValueError, match="'seeds' must be a list"):
        list_parameter(None, "seeds")


TINY_NOTEBOOK = """# %%
import time
from pathlib import Path

from omnijet_lib.notebooks import list_parameter, save_metrics, start_notebook

start_notebook()

# %% tags=["parameters"]
names = ["a"]
pause = 0.0
output_dir = "unused"

# %%
names = list_parameter(names, "names")
time.sleep(pause)
save_metrics({"names": names, "cwd": str(Path.cwd())}, output_dir)
"""


@pytest.fixture
def tiny_notebook(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(TINY_NOTEBOOK)
    return path


@pytest.mark.slow
def test_runner_merges_profile_files_and_parameters_in_order(tiny_notebook, tmp_path):
    import json

    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text("names: [x, y]\npause: 0.5\n")
    second.write_text("names: [z]\n")
    out = tmp_path / "out"
    run_notebook(tiny_notebook, parameter_files=[first, second], output_dir=out, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["names"] == ["z"]  # the later file wins
    assert metrics["cwd"] == str(ROOT)  # the notebook moved to the project root itself
    run_notebook(tiny_notebook, parameter_files=[first], parameters={"names": "p,q"}, output_dir=out, progress=False)
    assert json.loads((out / "metrics.json").read_text())["names"] == ["p", "q"]  # -p wins, read as a list
    executed = (out / "tiny.ipynb").read_text()
    assert not re.search(r'"output_type": "execute_result"', executed), "a notebook's last line shows a value"


def test_runner_refuses_unknown_names_in_a_parameter_file(tiny_notebook, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("names: [x]\nnmaes: [y]\n")
    with pytest.raises(UnknownParameterError, match="'nmaes'"):
        run_notebook(tiny_notebook, parameter_files=[bad], output_dir=tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="profile 'fast'.*'cpu'.*'paper'.*'quick'"):
        run_notebook(NOTEBOOKS[0], profile="fast", output_dir=tmp_path / "out")
    (tmp_path / "broken.yaml").write_text("names: [a, b\n")
    with pytest.raises(ValueError, match="broken.yaml is not valid YAML"):
        read_parameter_file(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping of parameter names"):
        read_parameter_file(tmp_path / "list.yaml")


TYPED_NOTEBOOK = """# %% tags=["parameters"]
n_items = 10
seed = 1
monitor_jets = 500  # 0: no monitor
offset = -3
rate = 0.5
fast = True
name = "a"
sizes = [1, 2]
energy = (10.0, 100.0)
limit = None
workers = os.cpu_count()
output_dir = "unused"
"""


@pytest.fixture
def typed_notebook(tmp_path):
    path = tmp_path / "typed.py"
    path.write_text(TYPED_NOTEBOOK)
    return path


def test_values_of_the_defaults_types_and_ranges_pass(typed_notebook):
    good = {
        "n_items": 1, "seed": 0, "monitor_jets": 0, "offset": -10, "rate": 2, "fast": False, "name": "b",
        "sizes": [3], "energy": 50.0, "limit": "anything", "workers": 3,
    }  # fmt: skip
    assert check_parameters(good, typed_notebook) == good  # an int where a float is expected is a number
    # A list given as text reaches the notebook as the list (papermill's -p would pass the text).
    assert check_parameters({"sizes": "4,5", "energy": "[20, 30]"}, typed_notebook) == {
        "sizes": [4, 5],
        "energy": [20, 30],
    }


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("n_items", "abc", "an integer"),
        ("n_items", 2.5, "an integer"),
        ("n_items", True, "an integer"),  # Python's bool is an int, but not a count
        ("n_items", 0, "an integer >= 1"),
        ("n_items", -5, "an integer >= 1"),
        ("seed", -1, "an integer >= 0"),
        ("monitor_jets", -1, "an integer >= 0"),
        ("rate", "fast", "a number"),
        ("rate", float("nan"), "a finite number"),
        ("fast", 1, "true or false"),
        ("name", 512, "text"),
        ("sizes", {"a": 1}, "a list, or one value"),
        ("sizes", "[1, 2", "cannot read"),
    ],
)
def test_a_value_of_another_type_or_out_of_range_is_refused(typed_notebook, name, value, expected):
    with pytest.raises(BadParameterError) as err:
        check_parameters({name: value}, typed_notebook)
    message = str(err.value)
    assert f"parameter {name!r}" in message and expected in message and "typed.py" in message
    if expected != "cannot read":  # list_parameter's own message names the value in its own words
        assert f"= {value!r} ({type(value).__name__})" in message


def test_every_bad_value_is_reported_at_once_before_the_notebook_starts(tmp_path, capsys):
    """Was: a papermill traceback halfway through notebook 01, and a parts folder of jets left behind."""
    from omnijet_lib.cli import main

    with pytest.raises(BadParameterError) as err:
        run_notebook(NOTEBOOKS[0], parameters={"n_jets": "abc", "n_jets_drawn": -5}, output_dir=tmp_path / "out")
    assert "'n_jets' = 'abc' (str): expected an integer" in str(err.value)
    assert "'n_jets_drawn' = -5 (int): expected an integer >= 1" in str(err.value)
    assert main(["run-notebook", str(NOTEBOOKS[0]), "-p", "n_jets", "-5", "--output-dir", str(tmp_path / "out")]) == 2
    assert "error: parameter 'n_jets' = -5 (int): expected an integer >= 1" in capsys.readouterr().err
    assert not list(tmp_path.iterdir()), "nothing is written or run with a bad parameter"


SLEEPY_NOTEBOOK = """# %%
import os
import time
from pathlib import Path

# %% tags=["parameters"]
pid_file = "unused"
output_dir = "unused"

# %%
Path(pid_file).write_text(str(os.getpid()))
time.sleep(120)  # as a long training would
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_is_an_interrupt_within_the_command():
    """So that ``kill`` or a batch system's time limit runs the cleanup Ctrl-C runs."""
    import os
    import signal
    import time

    from omnijet_lib.cli import _terminate_as_interrupt

    def outside(signum, frame):  # a SIGTERM that escaped the block must not end the test session
        received.append(signum)

    received = []
    previous = signal.signal(signal.SIGTERM, outside)
    try:
        with pytest.raises(KeyboardInterrupt), _terminate_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at once; never slept through
        assert signal.getsignal(signal.SIGTERM) is outside and not received  # and is restored after the block
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.slow
def test_killing_run_notebook_shuts_its_kernel_down(tmp_path):
    import subprocess
    import sys
    import time

    notebook, pid_file = tmp_path / "sleepy.py", tmp_path / "kernel.pid"
    notebook.write_text(SLEEPY_NOTEBOOK)
    command = [sys.executable, "-m", "omnijet_lib.cli", "run-notebook", str(notebook),
               "-p", "pid_file", str(pid_file), "--output-dir", str(tmp_path / "out")]  # fmt: skip
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.1)
    kernel = int(pid_file.read_text())
    run.terminate()  # SIGTERM to the command alone
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130 and "interrupted" in err  # handled: papermill's cleanup ran
    deadline = time.monotonic() + 10
    while _alive(kernel) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(kernel), "the kernel goes on running the notebook"


@pytest.mark.slow
def test_a_cell_past_the_execution_timeout_fails_the_run(tiny_notebook, tmp_path):
    with pytest.raises(Exception, match="(?i)timed? ?out"):
        run_notebook(tiny_notebook, parameters={"pause": 30}, output_dir=tmp_path, progress=False, execution_timeout=3)
