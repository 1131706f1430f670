# Every target installs what it needs into .venv first; .ci/run and README use these.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

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
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/kernel_mf.py
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/faults.py

clean:
	-STREAMREC_HOME=$(CURDIR)/.demo-home $(BIN)/streamrec server stop
	rm -rf .demo-home .pytest_cache .mypy_cache .ruff_cache
