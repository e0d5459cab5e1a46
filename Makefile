# The two commands: `make run` serves the demo on http://127.0.0.1:8000, `make test` runs the suite.
# Both set everything up from scratch on a fresh machine: venv, npm ci, Debian's chromium.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
DATA ?= data

.PHONY: run test lint setup chromium services test-scale build bench clean

run: setup
	$(VENV)/bin/waystation build
	$(PY) models/picks/publish_items.py --data $(DATA)
	$(VENV)/bin/waystation serve --host $(HOST) --port $(PORT) --data $(DATA)

test: setup chromium services lint
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff and mypy, as configured in pyproject.toml: seconds, so they run before every test run.
lint: setup
	$(VENV)/bin/ruff check py_src tests bench models
	$(VENV)/bin/mypy

bench: setup chromium
	$(PY) bench/glue_latency.py

setup: $(VENV)/.installed node_modules/.installed

build: setup
	$(VENV)/bin/waystation build

# Pinned, complete Python environment (requirements.lock), then the project itself, editable, with
# every extra: --no-index fails here if the lock lacks something an extra in pyproject.toml needs.
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==26.3
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-index --no-build-isolation -e ".[all]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# Playwright drives Debian's Chromium: its own browser download cannot work here.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Many instances: tests/scale runs HAProxy in front of several `waystation serve` sharing one
# PostgreSQL and one Redis, all real processes; then the whole unit suite again with every store on
# PostgreSQL (one throw-away cluster, a database per data folder). docs/deployment.md.
test-scale: setup services
	$(PY) -m pytest tests/scale $(PYTEST_ARGS)
	$(PY) -m pytest tests/unit --engine postgresql $(PYTEST_ARGS)

# Debian's PostgreSQL server, redis-server and HAProxy, for test-scale: the tests start their own
# throw-away instances of each, never the system's services.
services:
	@missing=""; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  command -v redis-server >/dev/null 2>&1 || test -x /usr/bin/redis-server || missing="$$missing redis-server"; \
	  command -v haproxy >/dev/null 2>&1 || test -x /usr/sbin/haproxy || missing="$$missing haproxy"; \
	  test -x /usr/sbin/nginx || missing="$$missing nginx"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian's$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi

clean:
	rm -rf dist build/.cache .pytest_cache
