"""Every notebook runs headless with tiny parameters and writes its figures and metrics."""

import json
from pathlib import Path

import pytest

from omnijet_lib.errors import UnknownParameterError
from omnijet_lib.notebooks import notebook_parameters, run_notebook

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.py"))

# Tiny parameters per notebook; a notebook missing here fails test_every_notebook_is_tested.
TINY = {
    "01_data": {"n_jets": 40, "n_jets_drawn": 2},
}


def test_every_notebook_is_tested():
    assert NOTEBOOKS, "no notebooks discovered"
    assert {nb.stem for nb in NOTEBOOKS} == set(TINY)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell(notebook):
    parameters = notebook_parameters(notebook)
    assert {"output_dir", "seed"} <= set(parameters)


def test_unknown_parameter_is_refused(tmp_path):
    with pytest.raises(UnknownParameterError) as err:
        run_notebook(NOTEBOOKS[0], parameters={"n_jet": 10}, output_dir=tmp_path)
    assert "'n_jet'" in str(err.value) and "'n_jets'" in str(err.value) and NOTEBOOKS[0].name in str(err.value)
    assert not list(tmp_path.iterdir()), "nothing runs with a bad parameter"


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_headless(notebook, tmp_path):
    parameters = dict(TINY[notebook.stem])
    if "data_dir" in notebook_parameters(notebook):
        parameters["data_dir"] = str(tmp_path / "data")
    executed = run_notebook(notebook, parameters=parameters, output_dir=tmp_path / "out", progress=False)
    assert executed.exists()
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for figure in metrics["figures"]:
        assert (tmp_path / "out" / figure).stat().st_size > 10_000
    CHECKS[notebook.stem](metrics)


def _check_01_data(metrics):
    assert metrics["n_jets"] == {"top": 40, "qcd": 40}
    assert {"jet_mass.png", "jet_tau32.png", "constituent_eta_rel.png", "jet_displays.png"} <= set(metrics["figures"])
    assert metrics["fraction_mass_140_200"]["top"] > metrics["fraction_mass_140_200"]["qcd"]
    assert metrics["mean_tau32"]["top"] < metrics["mean_tau32"]["qcd"]
    assert all(rate > 0 for rate in metrics["generation_jets_per_cpu_second"].values())


CHECKS = {"01_data": _check_01_data}
