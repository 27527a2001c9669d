# Gardien — two commands set everything up on a fresh machine with Python 3.11, git and make:
#   make demo   # install, obtain PostgreSQL, build the demo hospital, start Airflow, run a release
#   make test   # install, obtain PostgreSQL, lint, run the whole test suite
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
STATE := .gardien
STAMP := $(VENV)/.installed
PGENV := $(STATE)/pg.env
INTERACTIVE ?= 0
PYTEST_ARGS ?=

.PHONY: help install pg demo stop test test-ui test-distributed lint format bench clean compose-check

help:
	@echo "make demo    run one complete release of the demo hospital configuration (INTERACTIVE=1: approve in the UI)"
	@echo "make test    lint and run the whole test suite"
	@echo "make stop    stop what the demo started (Airflow, embedded PostgreSQL)"
	@echo "make test-ui  browser tests of the release board in Chromium (installs Chromium and Playwright if missing)"
	@echo "make test-distributed  releases to 10 targets on CeleryExecutor (starts the distributed Airflow, leaves it up)"
	@echo "make bench   benchmarks (figures go to docs/benchmarks.md)"
	@echo "make compose-check  start docker-compose.yml (podman), run releases through it, kill a worker (docs/compose-check.md)"

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11" >&2; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q "uv==$(UV_VERSION)"
	@$(UV) pip sync -q -p $(PY) requirements.lock
	@$(UV) pip install -q -p $(PY) --no-deps -e .
	@touch $@

install: $(STAMP)

# Obtain a PostgreSQL server: GARDIEN_PG_DSN, else 127.0.0.1:5432, else an embedded one in .gardien/pgdata.
pg: install
	@mkdir -p $(STATE)
	@$(PY) -m gardien.demo.server ensure --env-file $(PGENV)

demo: pg
	@set -a; source $(PGENV); set +a; $(PY) -m gardien.demo.run --interactive=$(INTERACTIVE)

stop:
	@if [ -x $(PY) ]; then $(PY) -m gardien.demo.airflow_local stop; $(PY) -m gardien.demo.airflow_distributed stop; $(PY) -m gardien.demo.server stop; fi

lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

format: install
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

test: pg lint
	@set -a; source $(PGENV); set +a; TQDM_DISABLE=1 $(VENV)/bin/pytest $(PYTEST_ARGS)

# Browser tier: Debian's Chromium driven by Playwright (no browser download: executable_path is the system
# one). As root on Debian it installs what is missing; otherwise it says what to install.
PLAYWRIGHT_VERSION := 1.65.2
CHROMIUM ?= $(or $(GARDIEN_CHROMIUM),$(shell command -v chromium || command -v chromium-browser || true))
test-ui: pg
	@if [ -z "$(CHROMIUM)" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "gardien: installing Debian's chromium (apt-get install -y chromium)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "error: Chromium is needed: run 'sudo apt-get install -y chromium' (Debian/Ubuntu) or set GARDIEN_CHROMIUM=/path/to/chromium" >&2; exit 2; \
		fi; \
	fi
	@$(PY) -c "import playwright" 2>/dev/null || $(UV) pip install -q -p $(PY) "playwright==$(PLAYWRIGHT_VERSION)"
	@set -a; source $(PGENV); set +a; GARDIEN_UI_TESTS=1 TQDM_DISABLE=1 $(VENV)/bin/pytest tests/ui $(PYTEST_ARGS)

# The session fixture of tests/distributed starts the CeleryExecutor stack (gardien.demo.airflow_distributed)
# if it is not running, or restarts it on the test configuration; it stays up for inspection (make stop).
test-distributed: pg
	@set -a; source $(PGENV); set +a; TQDM_DISABLE=1 $(VENV)/bin/pytest tests/distributed -m distributed $(PYTEST_ARGS)

bench: pg
	@set -a; source $(PGENV); set +a; $(PY) bench/run.py

# The container deployment, for real: images (local ones when no registry answers), the whole compose stack,
# two releases through the REST API, a restart, 3 workers, one killed mid-release. Never part of `make test`.
COMPOSE_PACKAGES := podman runc podman-compose debootstrap uidmap slirp4netns fuse-overlayfs
compose-check: install
	@if ! command -v podman >/dev/null || ! command -v podman-compose >/dev/null || ! command -v debootstrap >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(COMPOSE_PACKAGES) >/dev/null; \
	  else echo "error: install $(COMPOSE_PACKAGES) (Debian packages) first" >&2; exit 3; fi; \
	fi
	@$(PY) deploy/compose_check.py $(COMPOSE_CHECK_ARGS)

clean: stop
	rm -rf $(STATE) $(VENV) .pytest_cache .ruff_cache
