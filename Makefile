# The two commands of the README: `make demo` and `make test`. Both install what is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup demo test lint typecheck pytest bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml ops/bootstrap.sh
	VENV=$(VENV) ./ops/bootstrap.sh

## Bring up broker, API and one agent with a virtual printer; Ctrl-C stops everything.
demo: setup
	$(PY) -m printermaster demo $(DEMO_ARGS)

## Lint, type-check (the agent for Linux and Windows) and run the whole test suite.
test: setup lint typecheck pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy protocol groupcommit cloud_api broker printermaster ops
	$(VENV)/bin/mypy --platform linux branch_agent groupcommit
	$(VENV)/bin/mypy --platform win32 branch_agent groupcommit

pytest: setup
	$(PY) -m pytest $(PYTEST_ARGS)

## The full benchmark (see README); short form runs inside the suite.
bench: setup
	$(PY) -m ops.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache state bench-results
