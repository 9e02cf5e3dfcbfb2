# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# checkov (tests/deploy) lives in its own venv: its pinned dependencies clash with the project's.
TOOLS := .venv-tools
CHECKOV := $(TOOLS)/bin/checkov

.PHONY: run test lint typecheck unit integration bench clean setup

setup: $(STAMP) $(CHECKOV)

$(CHECKOV):
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet 'checkov==3.3.*'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m libs.devstack run

lint: $(STAMP)
	$(VENV)/bin/ruff check libs proto services tests bench deploy
	$(VENV)/bin/ruff format --check libs proto services tests bench deploy

typecheck: $(STAMP)
	$(VENV)/bin/mypy libs proto services deploy

test: $(STAMP) $(CHECKOV) lint typecheck
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) bench/gateway_hop.py

clean:
	rm -rf $(VENV) $(TOOLS) .data build *.egg-info
