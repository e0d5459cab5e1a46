# The two commands: `make run` serves the demo on http://127.0.0.1:8000, `make test` runs the suite.
# Both set everything up from scratch on a fresh machine: venv, npm ci, Debian's chromium.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
DATA ?= data

.PHONY: run test setup chromium build bench clean

run: setup
	$(VENV)/bin/waystation build
	$(PY) models/picks/publish_items.py --data $(DATA)
	$(VENV)/bin/waystation serve --host $(HOST) --port $(PORT) --data $(DATA)

test: setup chromium
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup chromium
	$(PY) bench/glue_latency.py

setup: $(VENV)/.installed node_modules/.installed

build: setup
	$(VENV)/bin/waystation build

# Pinned, complete Python environment (requirements.lock), then the project itself, editable.
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==26.3
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# Playwright drives Debian's Chromium: its own browser download cannot work here.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

clean:
	rm -rf dist build/.cache .pytest_cache
