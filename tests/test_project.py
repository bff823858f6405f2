"""The documented usage holds: install files agree, README commands exist, CI runs them."""

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from omnijet_lib.cli import build_parser

ROOT = Path(__file__).parent.parent


def test_environment_yml_installs_the_package_dependencies():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "torch==2.13.0" in pyproject["project"]["dependencies"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # The conda environment installs this package through pip: one list of dependencies.
    assert pip_section == ["-e .[dev]"]
    assert "dev" in pyproject["project"]["optional-dependencies"]
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    minimum = pyproject["project"]["requires-python"].removeprefix(">=")
    assert tuple(map(int, python.split("=")[1].split("."))) >= tuple(map(int, minimum.split(".")))


def test_readme_commands_are_the_makefile_and_ci_commands():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "make run" in readme and "make test" in readme
    assert re.search(r"^run:", makefile, re.MULTILINE) and re.search(r"^test:", makefile, re.MULTILINE)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    # Every notebook in the repository is part of the main job.
    main_job = re.search(r"^NOTEBOOKS := (.*)$", makefile, re.MULTILINE).group(1).split()
    assert main_job == sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))


@pytest.mark.parametrize(("pytest_exit", "make_fails"), [(5, True), (0, False), (1, True)])
def test_make_test_fails_when_no_test_is_collected(tmp_path, pytest_exit, make_fails):
    """A PYTEST_ARGS that selects nothing must not pass as a green run.  pytest is a stand-in exiting as told."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f"#!/bin/sh\nexit {pytest_exit}\n")
    (venv / "bin" / "python").chmod(0o755)
    installed = venv / ".installed"
    installed.touch()
    run = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "-o", str(installed), "test", f"VENV={venv}", "PYTEST_ARGS=-k nothing"],
        capture_output=True, text=True, timeout=60, check=False,  # the exit code is what is tested
    )  # fmt: skip
    assert (run.returncode != 0) == make_fails
    assert ("collected no tests" in run.stderr) == (pytest_exit == 5)
    if pytest_exit == 5:
        assert "PYTEST_ARGS=-k nothing" in run.stderr


def test_readme_omnijet_commands_parse():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^\.venv/bin/omnijet (.+)$", readme, re.MULTILINE)
    assert len(commands) >= 3
    parser = build_parser()
    for command in commands:
        args = parser.parse_args([a.strip("'") for a in command.split()])
        assert callable(args.func)


def test_the_code_cites_only_documents_in_the_repository():
    """Modules and notebooks cite docs/ pages that exist, never a document outside the repository."""
    outside = "".join(("REFER", "ENCE §"))  # the citation form of the old notes kept outside; spelt apart here
    cited = set()
    for path in [*ROOT.glob("omnijet_lib/**/*.py"), *ROOT.glob("notebooks/*.py"), *ROOT.glob("tests/*.py")]:
        text = path.read_text()
        assert outside not in text, f"{path} cites a document outside the repository"
        cited |= set(re.findall(r"docs/[\w.]+\.md", text))
    assert cited, "no module cites the docs"
    for page in cited:
        assert (ROOT / page).exists(), f"cited page {page} is missing"
