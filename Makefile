# PDEForge developer entry points. Each target creates the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1

# PyTorch (the loader's extra) as a CPU build: PyPI's default wheel pulls several GB of CUDA
# libraries. The CPU index is used when it answers; otherwise pip's configured indexes.
TORCH       ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# CHOLMOD (optional extra) builds against SuiteSparse's headers (Debian: libsuitesparse-dev);
# without them the direct engine uses SuperLU and nothing is compiled
comma   := ,
CHOLMOD := $(if $(wildcard /usr/include/suitesparse/cholmod.h),$(comma)cholmod,)

.PHONY: install serve test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# (PYTHONWARNINGS=ignore: setuptools warns that every editable install of a package-dir mapping is editable)
$(VENV)/.service: pyproject.toml | $(PY)
	@test -n "$(CHOLMOD)" || echo "note: no SuiteSparse headers: the direct engine will use SuperLU (apt-get install libsuitesparse-dev for CHOLMOD)"
	PYTHONWARNINGS=ignore $(PY) -m pip install -q -e '.[service$(CHOLMOD)]'
	touch $@

$(VENV)/.test: pyproject.toml | $(PY)
	$(PY) -m pip install -q "$(TORCH)" $$(curl -fsS -m 5 -o /dev/null $(TORCH_INDEX)/ 2>/dev/null \
		&& echo --index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple)
	PYTHONWARNINGS=ignore $(PY) -m pip install -q -e '.[test$(CHOLMOD)]'
	@$(PY) -c "import torch; torch.version.cuda and print('warning: a CUDA build of torch was installed (several GB)')"
	touch $@ $(VENV)/.service

install: $(VENV)/.service

## serve: install the service into .venv, run it on this machine (bundled Redis, workers, API on
## http://127.0.0.1:8000) and submit a first example job; Ctrl-C stops everything
serve: $(VENV)/.service
	$(VENV)/bin/pdeforge serve --submit examples/quickstart.json

## test: install the service, PyTorch (CPU) and the test tools into .venv and run the whole
## test-suite (starts a bundled Redis on 127.0.0.1:6379 for the run if none answers there)
test: $(VENV)/.test
	$(PY) tests/run.py

## bench: the engine benchmark at its default sizes (minutes on 2 cores)
bench: $(VENV)/.test
	$(PY) -m bench.engines

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
