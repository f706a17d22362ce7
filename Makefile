# Two commands on a fresh machine: `make run` (set up, index seeds/, serve) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test index serve lint bench clean mutation

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch==2.13.0 first: it is the CPU build; anything that pulls torch later is then satisfied.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/paracite index seeds/
	$(BIN)/paracite serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check indexer server tests bench eval
	$(BIN)/ruff format --check indexer server tests bench eval
	$(BIN)/mypy

# Mutation testing, not part of CI (it runs the covering tests once per mutant: long).
# Configured in pyproject.toml [tool.mutmut]: indexer/answer.py, indexer/retrieval.py,
# server/api.py and server/errors.py against the fast tests of answers, retrieval, filters,
# the API, the pages and HTTP hardening (see README, Development).
mutation: $(STAMP)
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) .paracite
