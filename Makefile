# Every target installs what it needs into $(VENV) first; .ci/run and README use these.
# Another interpreter gets its own venv:  make test PYTHON=python3.12 VENV=.venv312
# $(VENV) gets everything: the core, the `tf` extra (TensorFlow, for training), `dev` and `http`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint bench clean check-python

$(STAMP): pyproject.toml | check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[tf,dev,http]'
	touch $(STAMP)

## PYTHON must run, and an existing $(VENV) must have been made by the same Python version:
## a pyenv shim for a version that is not active fails here rather than halfway through.
check-python:
	@want=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
	  || { echo "make: PYTHON=$(PYTHON) does not run; pass the interpreter's full path" >&2; exit 1; }; \
	if [ -x $(BIN)/python ]; then \
	  have=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  if [ "$$have" != "$$want" ]; then \
	    echo "make: $(VENV) has Python $$have but PYTHON=$(PYTHON) is $$want;" \
	      "pass another VENV= (e.g. VENV=.venv$$(echo $$want | tr -d .)) or remove $(VENV)" >&2; \
	    exit 1; \
	  fi; \
	fi

install: $(STAMP)

## The whole pipeline end to end on generated data, on the embedded Redis (its own home).
demo: $(STAMP)
	STREAMREC_HOME=$(CURDIR)/.demo-home $(BIN)/streamrec demo --reset

## The whole test suite (embedded Redis, or STREAMREC_REDIS_URL when set).
test: $(STAMP)
	$(BIN)/pytest

## Quick loop while working: skips the slow end-to-end tests.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/freshness.py
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/serving_kernels.py
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/kernel_mf.py
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/two_tower.py
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/faults.py
	$(BIN)/python bench/index.py
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/http_api.py
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/soak.py

clean:
	-STREAMREC_HOME=$(CURDIR)/.demo-home $(BIN)/streamrec server stop
	rm -rf .demo-home .pytest_cache .mypy_cache .ruff_cache
