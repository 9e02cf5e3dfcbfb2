# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit integration bench clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m libs.devstack run

lint: $(STAMP)
	$(VENV)/bin/ruff check libs proto services tests bench
	$(VENV)/bin/ruff format --check libs proto services tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy libs proto services

test: $(STAMP) lint typecheck
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) bench/gateway_hop.py

clean:
	rm -rf $(VENV) .data build *.egg-info
