# Two entry points a fresh clone needs (see README):
#   make repro   install into .venv, then run the whole study with `dvc repro`
#   make test    install into .venv, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: install repro test test-fast benchmark clean-venv

# The pinned packages, then this checkout itself, editable (thinktune, stages and perf import
# from here, so edits are what runs); --no-deps: requirements.txt already holds every dependency.
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

repro: install
	dvc repro

# Two workers, each test module whole on one (module fixtures built once), the whole-pipeline
# modules first: on 2 cores the suite's waits (dvc, subprocesses, sandbox timeouts) overlap.
# --no-loadscope-reorder: keep conftest's order (xdist would sort modules by their number of tests).
PYTEST_WORKERS ?= -n 2 --dist loadscope --no-loadscope-reorder

test: install
	python -m pytest -q $(PYTEST_WORKERS)

test-fast: install
	python -m pytest -q $(PYTEST_WORKERS) -m "not e2e"

clean-venv:
	rm -rf $(VENV)
