# SDMI pipeline. `make help` lists the targets.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
export SDMI_HOME ?= $(CURDIR)/data
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.DEFAULT_GOAL := help
.PHONY: help install demo test bench chaos lint format generate clean

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,dask]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## create .venv and install the project with its dev tools

demo: $(STAMP) ## write the synthetic demo inbox and run the pipeline end to end
	$(BIN)/sdmi demo

test: $(STAMP) ## run the test suite (what CI runs), a file per worker, TEST_WORKERS=2 by default (CI's cores)
	$(BIN)/python -m pytest -n $${TEST_WORKERS:-2} --dist loadfile --no-loadscope-reorder

bench: $(STAMP) ## benchmarks: floor (DuckDB), peer (dlt), pipeline; ROWS=1000000 by default, PROFILE=1 adds a py-spy profile
	$(BIN)/python -m pip install --quiet -e '.[dev,dask,bench]'
	$(BIN)/python -m pipelines.bench --rows $${ROWS:-1000000} $${PROFILE:+--profile}

chaos: $(STAMP) ## long fault-injection runs (kill -9 at seeded points), prints what held
	$(BIN)/python -m pytest -m chaos -p no:cacheprovider tests/chaos

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check pipelines tests

format: $(STAMP) ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format pipelines tests

generate: $(STAMP) ## regenerate GX suite, DDL and data dictionary from schemas/placement.yaml
	$(BIN)/sdmi schema generate

clean: ## remove the virtual environment and the local data root (./data)
	rm -rf $(VENV) data .pytest_cache .ruff_cache
