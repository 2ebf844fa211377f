# The two commands a newcomer needs (see README.md).
PYTHON ?= python3

.PHONY: setup test test-colab lint pipeline

setup:
	bash scripts/setup.sh

# Runs the whole test suite (installs what it needs first).
test: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m pytest -q

# The suite again on Google Colab's stack: Python 3.13 with Colab's versions pinned
# (scripts/colab-stack.txt) in .venv-colab. Needs the system packages of `make setup`.
test-colab: setup
	bash scripts/colab_stack.sh $(PYTEST_ARGS)

lint:
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

# Runs 01 -> 02 -> 03 on the bundled sample corpus; override parameters with ARGS="...".
pipeline: setup
	$(PYTHON) -m utils.pipeline $(ARGS)
