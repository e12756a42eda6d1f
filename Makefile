# Ops Console: `make run` serves the console with demo data; `make test` runs every test.
# Both set everything up first on a fresh Debian/Ubuntu machine (see README.md).

SHELL := /bin/bash
PYTHON_BIN ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test setup services venv deps chromium nginx lint format migrate seed clean-venv

run: setup
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py seed_demo --if-empty
	HOST=$(HOST) PORT=$(PORT) ops_console/bin/run.sh

test: setup deps-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	DJANGO_SETTINGS_MODULE=ops_console.settings $(VENV)/bin/pytest -c tests/pytest.ini --rootdir . $(PYTEST_ARGS)

setup: services deps
	$(PY) -m ops_console.bootstrap
	$(PY) manage.py migrate --noinput -v0

services:
	ops_console/bin/ensure-services.sh

$(VENV)/bin/python:
	@command -v $(PYTHON_BIN) >/dev/null || { echo "Python 3.11 is required"; exit 1; }
	$(PYTHON_BIN) -m venv $(VENV) || { \
	  [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && $(PYTHON_BIN) -m venv $(VENV); }

venv: $(VENV)/bin/python

$(VENV)/.deps: requirements.txt | $(VENV)/bin/python
	$(PIP) install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.deps-test: requirements-test.txt requirements.txt | $(VENV)/bin/python
	$(PIP) install -q --disable-pip-version-check -r requirements-test.txt
	touch $@

deps: $(VENV)/.deps
deps-test: $(VENV)/.deps-test chromium nginx

# The browser journeys (tests/e2e) drive Debian's chromium through Playwright, never a browser
# Playwright downloads. Without it, and not root to install it, those journeys are skipped.
chromium:
	@[ -x /usr/bin/chromium ] || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium for the browser journeys"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || { \
	      DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; \
	  else echo "chromium is missing and this is not root: the browser journeys will be skipped"; fi; }

# The topology test (tests/topology) runs Debian's nginx in front of two app servers, from deploy/'s
# site file, on free ports with a configuration of its own (Debian's own site, which its package
# starts where systemd runs, is left alone).
# Without it, and not root to install it, that test is skipped.
nginx:
	@[ -x /usr/sbin/nginx ] || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's nginx for the topology test"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null 2>&1 || { \
	      DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }; \
	  else echo "nginx is missing and this is not root: the topology test will be skipped"; fi; }

lint: deps-test
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: deps-test
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

seed: setup
	$(PY) manage.py seed_demo

clean-venv:
	rm -rf $(VENV)
