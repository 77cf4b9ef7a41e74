# One entry point for everything CI runs: `make test`. `make demo` runs the product on
# embedded defaults (SQLite + the built-in provider emulator).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test lint typecheck unit integration system deploy demo bench bench-scale clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The suite in parallel workers: most of its time is spent waiting on subprocess daemons,
# sockets and databases, so three workers share two cores well (one module per worker at a
# time, tests/conftest.py). PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 3

test: lint typecheck
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=25

unit: $(STAMP)
	$(PY) -m pytest tests/unit

integration: $(STAMP)
	$(PY) -m pytest tests/integration

system: $(STAMP)
	$(PY) -m pytest tests/system

# Needs root, debootstrap, systemd-container and docker.io (.ci/run installs them).
deploy: $(STAMP)
	$(PY) -m pytest tests/deploy

demo: $(STAMP)
	$(VENV)/bin/receiptd demo

# The benchmarks behind the README's figures, one after the other (35 minutes here): each
# prints its tables with the load average before and after; receiptd's logs stay out of them
# (warnings go to stderr). tests/bench runs each at its smallest sizes in `make test`.
bench: $(STAMP)
	$(PY) bench/emulator.py
	$(PY) bench/consumer.py
	$(PY) bench/push.py
	$(PY) bench/polling.py
	$(PY) bench/compensator.py
	$(PY) bench/webhooks.py

# 10 M + 10 M rows into a scratch PostgreSQL database (about 6 GB, dropped at the end).
bench-scale: $(STAMP)
	$(PY) bench/scale.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache receiptd.db receiptd.db-* receiptd-demo.db receiptd-demo.db-*
