# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# checkov (tests/deploy) lives in its own venv: its pinned dependencies clash with the project's.
TOOLS := .venv-tools
CHECKOV := $(TOOLS)/bin/checkov

.PHONY: run test chaos lint typecheck unit integration bench clean setup web system-packages

# Debian packages beyond Python, make and git: found, or installed when root (else the exact sudo command).
SYSTEM_PACKAGES := libs/devstack/system_packages.sh
# What `make test` needs: chromium (browser tests), prometheus (promtool checks the alert rules),
# nodejs and npm (the web app is built before the browser tests), python3-venv (makes .venv).
system-packages:
	@PYTHON=$(PYTHON) $(SYSTEM_PACKAGES) python3-venv chromium prometheus nodejs npm

# The web app: rebuilt when its sources or lockfile change (npm ci, then vite build into web/dist).
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) web/index.html web/package.json \
	web/package-lock.json web/tsconfig.json web/vite.config.ts
WEB_STAMP := web/dist/index.html

web: $(WEB_STAMP)

$(WEB_STAMP): $(WEB_SOURCES)
	@$(SYSTEM_PACKAGES) nodejs npm
	cd web && npm ci --no-audit --no-fund && npm run build
	touch $(WEB_STAMP)

setup: $(STAMP) $(CHECKOV)

$(CHECKOV):
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet 'checkov==3.3.*'

$(STAMP): pyproject.toml
	@test -x $(PY) || PYTHON=$(PYTHON) $(SYSTEM_PACKAGES) python3-venv
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP) $(WEB_STAMP)
	$(PY) -m libs.devstack run

lint: $(STAMP)
	$(VENV)/bin/ruff check libs proto services tests bench deploy
	$(VENV)/bin/ruff format --check libs proto services tests bench deploy

typecheck: $(STAMP)
	$(VENV)/bin/mypy libs proto services deploy

test: system-packages $(STAMP) $(CHECKOV) $(WEB_STAMP) lint typecheck
	$(PY) -m pytest -q tests

# The chaos suite (tests/chaos, kept out of `make test`): kill -9 every service, nats-server and PostgreSQL
# one at a time under a mixed load; prints the table of acknowledged/kept/lost/doubled effects and recovery.
# CPC_CHAOS_FAULTS=social,postgres make chaos runs only those faults.
chaos: $(STAMP)
	$(PY) -m pytest -q -s -m chaos tests/chaos

# Every benchmark, one after another (each prints its figures next to a baseline of the same run).
bench: $(STAMP) $(WEB_STAMP)
	$(PY) bench/gateway_hop.py
	$(PY) bench/web_static.py
	$(PY) bench/golive_fanout.py
	$(PY) bench/durability.py
	$(PY) bench/chat_fanout.py
	$(PY) bench/webrtc_fanout.py
	$(PY) bench/transcode_ladder.py

clean:
	rm -rf $(VENV) $(TOOLS) .data build *.egg-info web/dist web/node_modules
