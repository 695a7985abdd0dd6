# `make test` and `make run` work on a clean checkout: they create .venv and install into it once
# (again only when pyproject.toml changes).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# What running a node needs, without the dev tools: `make run` on a fresh machine.
RUN_STAMP := $(VENV)/.installed-run

.PHONY: install test lint docs run sim bench mutate

$(BIN)/python:
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "paxostob needs Python 3.11 or newer; $(PY) is $$($(PY) --version 2>&1)." \
	  "Run: make $(MAKECMDGOALS) PY=python3.11 (or newer)"; exit 1; }
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev,docs]'
	touch $(STAMP) $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $(RUN_STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint docs
	$(BIN)/pytest
	$(BIN)/paxostob check

# The documentation site into site/ (mkdocs.yml: strict, nothing fetched from the network).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --quiet --strict

# Plants each bug of tests/mutation/mutate.py in a copy of src and runs the tests that must
# catch it; prints the killed/survived score. Not part of `make test` (several minutes).
mutate: $(STAMP)
	$(BIN)/python tests/mutation/mutate.py $(ARGS)

run: $(RUN_STAMP)
	$(BIN)/paxostob cluster --nodes 3 --data-dir ./data

sim: $(RUN_STAMP)
	$(BIN)/paxostob sim --runs 200

# The benchmark suite (docs/benchmarks.md): ARGS=--quick for the under-2-minute run,
# ARGS=--install-peers to apt-get/pip install ZooKeeper, etcd, Redis and PySyncObj first.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run_all.py $(ARGS)
