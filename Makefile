# `make test` and `make run` work on a clean checkout: they create .venv and install into it once
# (again only when pyproject.toml changes).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint run sim bench

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

run: $(STAMP)
	$(BIN)/paxostob cluster --nodes 3 --data-dir ./data

sim: $(STAMP)
	$(BIN)/paxostob sim --runs 200

bench: $(STAMP)
	$(BIN)/python bench/tob_inmemory.py
