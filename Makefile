# The two commands a newcomer needs (see README.md).
PYTHON ?= python3

.PHONY: setup test lint pipeline

setup:
	bash scripts/setup.sh

# Runs the whole test suite (installs what it needs first).
test: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

# Runs 01 -> 02 -> 03 on the bundled sample corpus; override parameters with ARGS="...".
pipeline: setup
	$(PYTHON) -m utils.pipeline $(ARGS)
