# Each target sets itself up on a fresh machine: a .venv made with pip, reinstalled only
# when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
# Debian's PostgreSQL, any version: its initdb, or a path that is never there, so make installs it
INITDB := $(or $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb)),/usr/lib/postgresql/initdb)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
LAB_PORT ?= 8888
# JupyterLab refuses to start as root (containers, CI) unless told it may.
ALLOW_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
# Offline machines: MLflow must not phone home (this make's commands and what they start).
export MLFLOW_DISABLE_TELEMETRY ?= true

.PHONY: demo test lab ui server bench

$(STAMP): pyproject.toml
	@echo "Setting up $(VENV) (the first time takes a few minutes: torch is large)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq -e '.[dev]'
	@touch $(STAMP)

$(CHROMIUM):  ## Debian's browser and driver, for the test that opens the MLflow UI
	@echo "Installing Debian's chromium and chromium-driver (tests/test_ui.py drives them)"
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver

$(INITDB):  ## Debian's PostgreSQL, for `sweepbook server` (tests/tracking/test_server.py runs one)
	@echo "Installing Debian's postgresql (sweepbook server runs its own cluster in .sweepbook/server/)"
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql

demo: $(STAMP)  ## a small sweep on the embedded SQLite store, then its summary
	$(BIN)/sweepbook sweep notebooks/train.ipynb model=cnn,mlp optimizer.lr=1e-3,1e-2 --workers 2

test: $(STAMP) $(CHROMIUM) $(INITDB)  ## the whole test suite
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=25

lab: $(STAMP)  ## JupyterLab on the project, bound to 127.0.0.1; open the URL it prints (with its token)
	$(BIN)/jupyter lab --ip 127.0.0.1 --port $(LAB_PORT) $(ALLOW_ROOT) --notebook-dir .

ui: $(STAMP)  ## MLflow UI on the local store, bound to 127.0.0.1
	$(BIN)/sweepbook ui

server: $(STAMP) $(INITDB)  ## this project's tracking server (PostgreSQL + mlflow server), for a team or a cluster; prints its URI
	$(BIN)/sweepbook server start

bench: $(STAMP) $(INITDB)  ## benchmarks (bench/), ratios measured side by side
	$(BIN)/python bench/tracking_overhead.py
	$(BIN)/python bench/sweep_speed.py
	$(BIN)/python bench/compare_speed.py
	$(BIN)/python bench/validate_speed.py
	$(BIN)/python bench/tune_efficiency.py
	$(BIN)/python bench/scale.py
