# The two commands of the README: `make run` and `make test`. Everything else is their plumbing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck test-embedded test-kafka test-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/sendstream serve --host $(HOST) --port $(PORT)

test-deps: $(VENV)/.installed-test
	bash scripts/install-test-deps.sh

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy domain engine adapters projections api cli

test-embedded: test-deps
	SENDSTREAM_TEST_KAFKA=0 $(BIN)/pytest -q -p no:cacheprovider

test-kafka: test-deps
	SENDSTREAM_TEST_KAFKA=1 $(BIN)/pytest -q -p no:cacheprovider -m "not unit"

test: lint test-embedded test-kafka

bench: $(VENV)/.installed-test test-deps
	$(BIN)/python -m bench

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
