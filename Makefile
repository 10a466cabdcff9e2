# PDEForge developer entry points. Each target creates its own virtual environment.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: install serve test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CHOLMOD (optional extra) needs SuiteSparse headers (Debian: libsuitesparse-dev); without
	# them the direct engine falls back to SuperLU and the rest installs as usual
	$(PY) -m pip install -q -e '.[test,cholmod]' || $(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

## serve: install into .venv, run the whole service on this machine (bundled Redis, workers,
## API on http://127.0.0.1:8000) and submit a first example job; Ctrl-C stops everything
serve: $(VENV)/.installed
	$(VENV)/bin/pdeforge serve --submit examples/quickstart.json

## test: install into .venv and run the whole test-suite (starts a bundled Redis on
## 127.0.0.1:6379 for the run if none answers there)
test: $(VENV)/.installed
	$(PY) tests/run.py

## bench: the SKR benchmark at its default sizes (minutes on 2 cores)
bench: $(VENV)/.installed
	$(PY) -m bench.skr

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
