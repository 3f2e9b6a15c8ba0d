# The two commands of the README: `make run` and `make test`. Everything else is their plumbing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# The suite spreads over processes (pytest-xdist): its tests mostly wait on brokers, sockets
# and timers, so more processes than cores pay. Tests of the fake mail servers on port 25
# run in one of them (--dist loadgroup).
TEST_PROCESSES ?= 3
KAFKA_TEST_PROCESSES ?= 4
PYTEST := $(BIN)/pytest -q -p no:cacheprovider --dist loadgroup

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

# The suite generates a client from the OpenAPI document with openapi-python-client, whose
# pins (typer, httpx) differ from the engine's: it lives in a venv of its own.
TOOLS := .venv-tools
$(TOOLS)/.installed:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --upgrade pip
	$(TOOLS)/bin/pip install --quiet 'openapi-python-client>=0.29'
	touch $@

run: $(VENV)/.installed
	$(BIN)/sendstream serve --host $(HOST) --port $(PORT)

test-deps: $(VENV)/.installed-test $(TOOLS)/.installed
	bash scripts/install-test-deps.sh

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy domain engine adapters projections api cli

test-embedded: test-deps
	SENDSTREAM_TEST_KAFKA=0 $(PYTEST) -n $(TEST_PROCESSES)

test-kafka: test-deps
	SENDSTREAM_TEST_KAFKA=1 $(PYTEST) -n $(KAFKA_TEST_PROCESSES) -m "not unit"

test: lint test-embedded test-kafka

bench: $(VENV)/.installed-test test-deps
	$(BIN)/python -m bench

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache $(TOOLS)
