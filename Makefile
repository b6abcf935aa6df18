# The two commands of the README: `make demo` and `make test`. Both install what is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_ARGS ?=
# The lowest Python the agent supports (pyproject's requires-python): CI type-checks for it.
PY_LOWEST := 3.11
# Three workers (pytest-xdist): most tests wait on brokers, agents and the API rather than
# compute. loadgroup keeps tests of one xdist_group (the build/ cache) on one worker.
# PYTEST_ARGS= runs the suite in one process.
PYTEST_ARGS ?= -n 3 --dist loadgroup

.PHONY: setup demo test lint typecheck build agent-exe pytest bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml ops/bootstrap.sh
	VENV=$(VENV) ./ops/bootstrap.sh

## Bring up broker, API and one agent with a virtual printer; Ctrl-C stops everything.
demo: setup
	$(PY) -m printermaster demo $(DEMO_ARGS)

## Lint, type-check (the agent for Linux and Windows, at the lowest supported Python), build the
## wheel and sdist, and run the whole test suite (which installs that wheel in a fresh venv).
test: setup lint typecheck build pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy protocol agent_config mqtt_adapter pmlog groupcommit cloud_api broker printermaster ops
	$(VENV)/bin/mypy --python-version $(PY_LOWEST) --platform linux branch_agent agent_config mqtt_adapter pmlog groupcommit
	$(VENV)/bin/mypy --python-version $(PY_LOWEST) --platform win32 branch_agent agent_config mqtt_adapter pmlog groupcommit

## The wheel and sdist in dist/ (what docs/install-agent.md installs).
build: setup
	rm -rf dist
	$(PY) -m build --outdir dist . >build.log 2>&1 || (tail -30 build.log; exit 1)
	@ls dist

## The single-file agent (dist/printermaster, or printermaster.exe on Windows).
agent-exe: setup
	$(VENV)/bin/pyinstaller --noconfirm --distpath dist --workpath build/pyinstaller \
	  ops/pyinstaller/printermaster-agent.spec

pytest: setup
	$(PY) -m pytest $(PYTEST_ARGS)

## The full benchmark (see README); short form runs inside the suite.
bench: setup
	$(PY) -m ops.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache state bench-results build dist build.log
