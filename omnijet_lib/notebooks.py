"""The project's notebooks: what each one does first and last, parameter profiles, the headless runner.

A notebook is a percent-format ``.py`` file with one cell tagged ``parameters``.
It runs the same in JupyterLab, under plain ``papermill`` and under
:func:`run_notebook` (``omnijet run-notebook``), because it sets up everything a
runner might otherwise set: :func:`start_notebook` moves to the project root and
picks the plotting style, :func:`list_parameter` reads a list however it was
passed, :func:`save_metrics` writes ``metrics.json`` and prints nothing.

Parameter profiles are YAML files, one per notebook, in
``notebooks/profiles/<profile>/<notebook>.yaml`` (papermill's ``-f``):
``quick`` runs the whole main job in minutes, ``cpu`` holds the notebooks'
defaults, ``paper`` the papers' settings for a GPU node.

:func:`run_notebook` converts a notebook to ``.ipynb``, checks the given
parameters against its parameters cell (an unknown name, or a value that does
not fit the default's type or range, is an error before anything runs: not a
silently ignored value, nor a traceback halfway) and executes it with papermill.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import numbers
import os
from pathlib import Path

from omnijet_lib.errors import BadParameterError, UnknownParameterError

KERNEL = "python3"
PROFILES_DIR = "notebooks/profiles"


def project_root() -> Path:
    """The checkout this library was installed from (``pip install -e .``), else the working directory."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() and (here / "notebooks").is_dir() else Path.cwd()


def start_notebook() -> None:
    """What every notebook runs first, so that it behaves the same wherever it runs.

    The working directory becomes the project root (relative paths in parameters
    mean the same in JupyterLab, under plain papermill and under the runner) and
    matplotlib gets the project's mplhep style.  Figures are shown through
    :func:`omnijet_lib.plotting.show_and_save`, which does not depend on the
    backend the kernel picked.  Returns nothing: as the last line of a cell it shows nothing.
    """
    from omnijet_lib.plotting import use_style

    os.chdir(project_root())
    use_style()


def list_parameter(value: object, name: str) -> list:
    """A list parameter however it arrived: a list, a JSON list in a string, comma-separated text, or one value.

    ``papermill -p tokenizers '["a", "b"]'`` hands the notebook the *string*
    ``'["a", "b"]'`` (only ``-y``/``-f`` parse YAML); iterating over it would give
    file names of single characters far from the cause.  Items of a comma-separated
    string are read as JSON where they can be, so ``-p sizes 100,300`` gives numbers.
    """
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as err:
                msg = (
                    f"parameter {name!r}: cannot read {value!r} as a list ({err}); pass JSON with double quotes, "
                    f'e.g. -p {name} \'["a", "b"]\', or a YAML list with papermill\'s -y/-f'
                )
                raise ValueError(msg) from None
            return list(parsed)
        return [parse_parameter(item.strip()) for item in text.split(",") if item.strip()]
    if value is None:
        msg = f"parameter {name!r} must be a list, got None"
        raise ValueError(msg)
    return [value]  # one number: a list of one


def save_metrics(metrics: dict, output_dir: str | os.PathLike) -> None:
    """Write a notebook's summary as ``output_dir/metrics.json`` (numpy numbers as floats).

    Returns nothing, so that as a notebook's last statement it shows nothing (``write_text``
    would show the number of characters written).
    """
    (Path(output_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))


def profile_file(profile: str, notebook: str | os.PathLike) -> Path:
    """The parameter file of ``notebook`` (a path or a stem like ``04_generation``) in ``profile``."""
    folder = project_root() / PROFILES_DIR
    path = folder / profile / f"{Path(notebook).stem.removesuffix('.input')}.yaml"
    if not path.exists():
        known = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        msg = f"no parameter file {path} for profile {profile!r}; profiles: {known}"
        raise FileNotFoundError(msg)
    return path


def read_parameter_file(path: str | os.PathLike) -> dict[str, object]:
    """The parameters of a YAML parameter file (papermill's ``-f``): a mapping of names to values."""
    import yaml

    path = Path(path)
    if not path.exists():
        msg = f"parameter file not found: {path}"
        raise FileNotFoundError(msg)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        msg = f"{path} is not valid YAML: {err}"
        raise ValueError(msg) from None
    if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
        msg = f"{path}: a parameter file must be a mapping of parameter names to values"
        raise ValueError(msg)
    return values


def read_profile(profile: str, notebook: str | os.PathLike) -> dict[str, object]:
    """The parameters ``profile`` sets for ``notebook``."""
    return read_parameter_file(profile_file(profile, notebook))


def to_ipynb(notebook: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Convert a jupytext ``.py`` notebook to ``.ipynb`` with the python3 kernel set."""
    import jupytext

    nb = jupytext.read(notebook)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(nb, out, fmt="ipynb")
    return out


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, object]:
    """Names and default values of the ``parameters`` cell of a notebook (.py or .ipynb).

    A default that is an expression, e.g. ``os.cpu_count()``, is given as its text.
    """
    return _parameters_cell(notebook)[0]


def parameter_comments(notebook: str | os.PathLike) -> dict[str, str]:
    """What the comment on each parameter's line of the parameters cell says (the help of ``omnijet train``)."""
    import io
    import tokenize

    source = _parameters_source(notebook)
    comments = {
        token.start[0]: token.string.lstrip("# ").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    names = {}
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
            lines = range(statement.lineno, statement.end_lineno + 1)  # a statement formatted over several lines
            names[statement.targets[0].id] = next((comments[n] for n in lines if n in comments), "")
    return names


def notebook_values(namespace: dict, notebook: str | os.PathLike) -> dict[str, object]:
    """The notebook's parameters as they stand in ``namespace`` (a running notebook's ``globals()``), paths as text."""
    names = notebook_parameters(notebook)
    return {
        name: str(value) if isinstance(value, Path) else value for name, value in namespace.items() if name in names
    }


def launch_training(model: str, parameters: dict[str, object], *, n_processes: int) -> None:
    """Train ``model`` with a notebook's ``parameters`` in ``n_processes`` processes: ``torchrun ... omnijet train``.

    Its output (rank 0's progress bars) appears in the notebook as it comes; a failed
    run raises with the end of it.  The notebook then reads the finished run from its
    ``run_dir`` as if it had trained it.  On one node (``--standalone``); for several,
    run ``torchrun`` from the batch job (see the README).
    """
    import subprocess
    import sys
    import tempfile

    import yaml

    with tempfile.TemporaryDirectory() as folder:
        parameter_file = Path(folder) / "parameters.yaml"
        parameter_file.write_text(yaml.safe_dump(parameters))
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n_processes}",
            "-m", "omnijet_lib.cli", "train", model, "-f", str(parameter_file),
        ]  # fmt: skip
        # Passed on as it comes, not line by line: a progress bar redraws its line with carriage returns.
        run = subprocess.Popen(command, cwd=project_root(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = []
        while chunk := run.stdout.read1(1 << 14):
            text = chunk.decode(errors="replace")
            sys.stdout.write(text)
            sys.stdout.flush()
            output.append(text)
        code = run.wait()
    if code != 0:
        tail = "".join(output)[-4000:]
        msg = f"training under torchrun failed (exit code {code}): {' '.join(command)}\n{tail}"
        raise RuntimeError(msg)


def _parameters_source(notebook: str | os.PathLike) -> str:
    """The source of the notebook's one ``parameters`` cell, read once per version of the file."""
    path = Path(notebook).resolve()
    return _read_parameters_source(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _read_parameters_source(path: Path, mtime_ns: int) -> str:  # mtime_ns: an edited notebook is read again
    import jupytext

    cells = [c for c in jupytext.read(path).cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        msg = f"{path} must have exactly one cell tagged 'parameters', found {len(cells)}"
        raise ValueError(msg)
    return cells[0].source


def _parameters_cell(notebook: str | os.PathLike) -> tuple[dict[str, object], set[str]]:
    """The defaults of a notebook's parameters, and the names of those whose default is an expression."""
    defaults: dict[str, object] = {}
    expressions: set[str] = set()
    for statement in ast.parse(_parameters_source(notebook)).body:  # parsed, never executed
        if isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    try:
                        defaults[target.id] = ast.literal_eval(statement.value)
                        expressions.discard(target.id)
                    except ValueError:  # an expression, e.g. os.cpu_count(): its text stands in
                        defaults[target.id] = ast.unparse(statement.value)
                        expressions.add(target.id)
    return defaults, expressions


# Integer parameters whose default is positive are counts and sizes: 0 or less is refused before the
# notebook starts, rather than failing (or running empty) halfway.  Seeds may be 0, and so may these,
# for which 0 means "none" (their comments in the parameters cells say so).
ZERO_MEANS_NONE = frozenset({"monitor_jets"})


def _is_seed(name: str) -> bool:
    return name == "seed" or name.endswith("_seed")


def check_parameters(parameters: dict[str, object], notebook: str | os.PathLike) -> dict[str, object]:
    """``parameters`` checked against the defaults of the notebook's parameters cell; returns them ready to pass.

    A value must have its default's type: an integer where the default is one
    (``True`` is not one), a number where it is a float, text where it is text.
    A list parameter may be given as a list, as text (read by :func:`list_parameter`,
    and passed on as the list) or as one value.  A default of ``None``, or an
    expression, says nothing about the type: anything goes.  Counts must be >= 1
    (see :data:`ZERO_MEANS_NONE`), seeds >= 0, floats finite.  Every problem is
    reported at once, in a :class:`BadParameterError`; an unknown name is an
    :class:`UnknownParameterError`.
    """
    defaults, expressions = _parameters_cell(notebook)
    unknown = [name for name in parameters if name not in defaults]
    if unknown:
        raise UnknownParameterError(unknown, defaults, notebook=str(notebook))
    checked, problems = {}, []
    for name, value in parameters.items():
        default = defaults[name]
        try:
            checked[name] = value if default is None or name in expressions else _check_value(name, value, default)
        except ValueError as err:
            problems.append(str(err))
    if problems:
        raise BadParameterError(problems, notebook=str(notebook))
    return checked


def _check_value(name: str, value: object, default: object) -> object:
    """``value`` of parameter ``name``, if it fits ``default``'s type and range; else a ValueError saying why."""

    def refuse(expected: str) -> ValueError:
        return ValueError(f"parameter {name!r} = {value!r} ({type(value).__name__}): expected {expected}")

    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise refuse(f"true or false (its default is {default!r})")
    elif isinstance(default, int):
        if not (is_number and isinstance(value, numbers.Integral)):
            raise refuse(f"an integer (its default is {default!r})")
        minimum = 0 if _is_seed(name) or name in ZERO_MEANS_NONE else 1
        if default > 0 and value < minimum:
            raise refuse(f"an integer >= {minimum} (its default is {default!r})")
    elif isinstance(default, float):
        if not is_number:  # an integer is a float too
            raise refuse(f"a number (its default is {default!r})")
        if not math.isfinite(value):
            raise refuse(f"a finite number (its default is {default!r})")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise refuse(f"text (its default is {default!r})")
    elif isinstance(default, (list, tuple)):
        if isinstance(value, str):
            return list_parameter(value, name)  # a list the notebook receives as a list, or a clear error now
        if not (isinstance(value, (list, tuple)) or is_number):
            raise refuse(f"a list, or one value (its default is {list(default)!r})")
    elif not isinstance(value, type(default)):
        raise refuse(f"a {type(default).__name__} (its default is {default!r})")
    return value


def given_parameters(
    notebook: str | os.PathLike,
    *,
    profile: str | None = None,
    parameter_files: list[str | os.PathLike] | tuple = (),
    parameters: dict[str, object] | None = None,
) -> dict[str, object]:
    """The parameters given to ``notebook``: ``profile``'s file, then each of ``parameter_files``, then
    ``parameters``, each overriding the one before; checked (:func:`check_parameters`)."""
    merged: dict[str, object] = {}
    for path in [*([profile_file(profile, notebook)] if profile else []), *parameter_files]:
        merged |= read_parameter_file(path)
    return check_parameters(merged | dict(parameters or {}), notebook)


def run_notebook(
    notebook: str | os.PathLike,
    *,
    parameters: dict[str, object] | None = None,
    parameter_files: list[str | os.PathLike] | tuple = (),
    profile: str | None = None,
    output_dir: str | os.PathLike | None = None,
    progress: bool = True,
    execution_timeout: float | None = None,
) -> Path:
    """Execute ``notebook`` with papermill; returns the executed ``.ipynb``.

    Parameters come from ``profile`` (``notebooks/profiles/<profile>/<notebook>.yaml``),
    then each of ``parameter_files`` (papermill's ``-f``), then ``parameters``, each
    overriding the one before.  ``output_dir`` (made absolute against the caller's
    working directory) is passed as the notebook's ``output_dir`` parameter; the
    executed notebook is saved there too.  A cell running longer than
    ``execution_timeout`` seconds stops the run with an error.
    """
    import papermill

    notebook = Path(notebook).resolve()
    if not notebook.exists():
        msg = f"notebook not found: {notebook}"
        raise FileNotFoundError(msg)
    # Checked before anything is written or run: a bad value would otherwise fail halfway, after the notebook
    # has made folders (a half-generated data set, a run directory) that then stand in the way of the right one.
    parameters = given_parameters(notebook, profile=profile, parameter_files=parameter_files, parameters=parameters)
    defaults = notebook_parameters(notebook)
    if output_dir is not None:
        parameters["output_dir"] = str(Path(output_dir).resolve())
    out_dir = Path(str(parameters.get("output_dir", defaults.get("output_dir", "runs"))))
    out_dir = out_dir if out_dir.is_absolute() else project_root() / out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    source = to_ipynb(notebook, out_dir / f"{notebook.stem}.input.ipynb")
    executed = out_dir / f"{notebook.stem}.ipynb"
    try:
        # Nothing here that plain papermill would not do: the notebook sets its own working directory and style.
        papermill.execute_notebook(
            str(source), str(executed), parameters=parameters, kernel_name=KERNEL,
            progress_bar=progress, execution_timeout=execution_timeout,
        )  # fmt: skip
    finally:
        source.unlink(missing_ok=True)
    return executed


def parse_parameter(value: str) -> object:
    """A command-line parameter value: JSON if it parses (numbers, lists, true/null), else the text."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
