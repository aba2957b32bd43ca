# Everything bootstraps from a bare python3: a private uv, then the locked environment.
SHELL := /bin/bash
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Compile the environment's bytecode once at install: test subprocesses (the CLI, racing
# writers) then import without recompiling, even where PYTHONDONTWRITEBYTECODE is set.
export UV_COMPILE_BYTECODE := 1

DAGSTER_HOME_DIR := $(CURDIR)/.dagster_home
DATA_DIR := $(CURDIR)/.metaxy_data
PORT ?= 3000

.PHONY: dev demo test lint typecheck docs bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras
	touch $@

# Tests run in parallel worker processes (pytest-xdist), one per core by default; each worker
# starts its own PostgreSQL and S3 test servers. `make test TEST_WORKERS=0` runs them in one
# process. Work stealing keeps both cores busy until the last slow test ends.
TEST_WORKERS ?= auto
test: $(VENV)/.synced
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check metaxy_core metaxy_dagster example_project tests
	$(VENV)/bin/ruff format --check metaxy_core metaxy_dagster example_project tests

typecheck: $(VENV)/.synced
	$(VENV)/bin/pyright metaxy_core

# `make dev` keeps the example's metadata in a DuckDB file (one run at a time);
# `make dev METAXY_STORE=delta` uses a Delta store instead, with up to four batch runs at once
# and each run's steps in parallel processes (the instance settings follow the store).
METAXY_STORE ?= duckdb
INSTANCE_SETTINGS := example_project/$(if $(filter delta,$(METAXY_STORE)),dagster_parallel.yaml,dagster.yaml)

dev: $(VENV)/.synced
	mkdir -p $(DAGSTER_HOME_DIR) $(DATA_DIR)
	cp $(INSTANCE_SETTINGS) $(DAGSTER_HOME_DIR)/dagster.yaml
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) METAXY_DATA_DIR=$(DATA_DIR) METAXY_STORE=$(METAXY_STORE) \
		$(VENV)/bin/dagster dev -w workspace.yaml -p $(PORT)

# The documentation site (MkDocs + mkdocstrings) into site/; `make test` builds it strictly too.
docs: $(VENV)/.synced
	$(VENV)/bin/mkdocs build --strict

# The same pipeline headless, on a temporary Dagster instance and data folder (leaves no trace).
demo: $(VENV)/.synced
	$(VENV)/bin/python -m example_project.demo

# Benchmarks, not tests: quick (N = 10,000) from a fresh clone; BENCH_ARGS=--full adds 1M
# (see BENCHMARKS.md). Creates the peer's venv under benchmarks/.peer-venv if PyPI is reachable.
bench: $(VENV)/.synced
	$(VENV)/bin/python benchmarks/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(TOOLS) $(VENV) $(DAGSTER_HOME_DIR) $(DATA_DIR) site
