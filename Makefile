# Two commands do all set-up on a fresh machine with only Python 3 and make:
#   make demo   -> creates .venv, installs the package, runs examples/quickstart.py
#   make test   -> creates .venv if needed, installs, runs the whole test suite
# torch is installed first and on its own so a CPU machine never pulls the CUDA build:
#   make test TORCH="torch==2.13.0"                      (default; a CPU wheel on this machine's disk)
#   make test TORCH="torch" TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test venv install bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

$(STAMP): $(PY) pyproject.toml
	$(PIP) install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	$(PIP) install --quiet -e ".[test]"
	touch $(STAMP)

venv install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/quickstart.py

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/bench_training_overhead.py

clean:
	rm -rf $(VENV) outputs .pytest_cache build *.egg-info
