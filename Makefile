# `make test` and `make run` work on a clean checkout: they create .venv and install into it once
# (again only when pyproject.toml changes).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint run sim bench mutate

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev,net]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# Plants each bug of tests/mutation/mutate.py in a copy of src and runs the tests that must
# catch it; prints the killed/survived score. Not part of `make test` (several minutes).
mutate: $(STAMP)
	$(BIN)/python tests/mutation/mutate.py $(ARGS)

run: $(STAMP)
	$(BIN)/paxostob cluster --nodes 3 --data-dir ./data

sim: $(STAMP)
	$(BIN)/paxostob sim --runs 200

# The benchmark suite (docs/benchmarks.md): ARGS=--quick for the under-2-minute run,
# ARGS=--install-peers to apt-get/pip install ZooKeeper, etcd, Redis and PySyncObj first.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install -e '.[dev,net,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run_all.py $(ARGS)
