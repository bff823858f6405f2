# Two entry points on a fresh machine (see README): `make run` and `make test`.
# Both create the virtual environment first; pip installs torch 2.13.0 (CPU) and
# everything else from pyproject.toml, the one list of dependencies.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The main job, in order: later issues append their notebooks here.
NOTEBOOKS := 01_data 02_tokenization_quality 03_token_space 04_generation 05_transfer_learning 06_calorimeter_showers 07_direct_spatial_tokens 08_hcal_pions 09_cross_data
# A parameter profile (notebooks/profiles/<PROFILE>/): quick, cpu, paper. Empty: the notebooks' defaults
# (the same as cpu), writing to figures/<notebook>; a profile writes where its files say (figures/<profile>/...).
PROFILE ?=

.PHONY: install run demo test lab

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	set -e; for nb in $(NOTEBOOKS); do \
		$(BIN)/omnijet run-notebook notebooks/$$nb.py \
			$(if $(PROFILE),--profile $(PROFILE),--output-dir figures/$$nb); \
	done

# The whole main job on the quick profile: minutes on 2 cores, figures in figures/quick/<notebook>/.
demo:
	$(MAKE) run PROFILE=quick

# pytest exits 5 when it collects no test (a mistyped path or -k in PYTEST_ARGS): that is a failure, not
# a pass of nothing, and is said plainly.
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS); code=$$?; \
	if [ $$code -eq 5 ]; then echo "make test: pytest collected no tests (PYTEST_ARGS=$(PYTEST_ARGS)): nothing was tested" >&2; fi; \
	exit $$code

# JupyterLab on the project, for every user (root too), no browser started: open the URL it prints.
# lab/ is a Jupyter config dir put first on JUPYTER_CONFIG_PATH: its labconfig/default_setting_overrides.json
# opens a .py notebook as a notebook on double-click; jupytext.toml keeps a saved .py as committed.
# More options for `jupyter lab`: make lab LAB_ARGS='--port=8890 --ip=0.0.0.0'
LAB_ARGS ?=
lab: install
	@test -x $(BIN)/jupyter-lab || $(BIN)/python -m pip install -e '.[lab]'
	@echo "JupyterLab on $(CURDIR): open the URL printed below, http://127.0.0.1:PORT/lab?token=..., in a browser; Ctrl+C stops it."
	JUPYTER_CONFIG_PATH="$(CURDIR)/lab$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH}" \
		$(BIN)/jupyter lab --no-browser --ServerApp.root_dir="$(CURDIR)" \
		$$(if [ "$$(id -u)" -eq 0 ]; then echo --allow-root; fi) $(LAB_ARGS)
