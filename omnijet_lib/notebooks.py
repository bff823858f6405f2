"""Run the project's jupytext notebooks headless with papermill.

A notebook is a percent-format ``.py`` file with one cell tagged ``parameters``.
:func:`run_notebook` converts it to ``.ipynb``, checks the given parameters
against that cell (an unknown name is an error, not a silently ignored value)
and executes it with the working directory at the project root, so relative
paths mean the same in JupyterLab (whose notebooks ``chdir`` there too) and
headless.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

from omnijet_lib.errors import UnknownParameterError

KERNEL = "python3"


def project_root() -> Path:
    """The checkout this library was installed from (``pip install -e .``), else the working directory."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() and (here / "notebooks").is_dir() else Path.cwd()


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
    """Names and default values of the ``parameters`` cell of a notebook (.py or .ipynb)."""
    import jupytext

    nb = jupytext.read(notebook)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        msg = f"{notebook} must have exactly one cell tagged 'parameters', found {len(cells)}"
        raise ValueError(msg)
    defaults: dict[str, object] = {}
    for statement in ast.parse(cells[0].source).body:  # parsed, never executed
        if isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    try:
                        defaults[target.id] = ast.literal_eval(statement.value)
                    except ValueError:  # an expression, e.g. os.cpu_count(): its text stands in
                        defaults[target.id] = ast.unparse(statement.value)
    return defaults


def run_notebook(
    notebook: str | os.PathLike,
    *,
    parameters: dict[str, object] | None = None,
    output_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """Execute ``notebook`` with ``parameters``; returns the executed ``.ipynb``.

    ``output_dir`` (made absolute against the caller's working directory) is
    passed to the notebook as its ``output_dir`` parameter; the executed
    notebook is saved there too.
    """
    import papermill

    notebook = Path(notebook).resolve()
    if not notebook.exists():
        msg = f"notebook not found: {notebook}"
        raise FileNotFoundError(msg)
    parameters = dict(parameters or {})
    defaults = notebook_parameters(notebook)
    unknown = [name for name in parameters if name not in defaults]
    if unknown:
        raise UnknownParameterError(unknown, defaults, notebook=str(notebook))
    if output_dir is not None:
        parameters["output_dir"] = str(Path(output_dir).resolve())
    out_dir = Path(str(parameters.get("output_dir", defaults.get("output_dir", "runs"))))
    out_dir = out_dir if out_dir.is_absolute() else project_root() / out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    source = to_ipynb(notebook, out_dir / f"{notebook.stem}.input.ipynb")
    executed = out_dir / f"{notebook.stem}.ipynb"
    os.environ.setdefault("MPLBACKEND", "agg")  # the kernel inherits it: no display needed
    try:
        papermill.execute_notebook(
            str(source), str(executed), parameters=parameters, kernel_name=KERNEL,
            cwd=str(project_root()), progress_bar=progress,
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
