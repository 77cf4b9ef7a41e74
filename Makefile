# One entry point for everything CI runs: `make test`. `make demo` runs the product on
# embedded defaults (SQLite + the built-in provider emulator).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test lint typecheck unit integration system deploy demo bench bench-scale clean lock pythons

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
	$(MAKE) -j2 pythons

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
	$(PY) bench/receipt_cost.py
	$(PY) bench/receipt_cost.py --sends
	$(PY) bench/push.py
	$(PY) bench/polling.py
	$(PY) bench/accounts.py
	$(PY) bench/compensator.py
	$(PY) bench/webhooks.py

# 10 M + 10 M rows into a scratch PostgreSQL database (about 6 GB, dropped at the end).
bench-scale: $(STAMP)
	$(PY) bench/scale.py
	$(PY) bench/migration.py

clean:
	rm -rf $(VENV) .venv-3.* .mypy_cache .ruff_cache .pytest_cache receiptd.db receiptd.db-* receiptd-demo.db receiptd-demo.db-*

# The image's lock files (requirements/, used by the Dockerfile with --require-hashes):
# every dependency of receiptd[huawei] and of the build backend pinned with the hashes of
# its files, resolved for every Python >= 3.11 and platform. `make lock` keeps the pins that
# still satisfy pyproject.toml; `make lock LOCK_FLAGS=--upgrade` moves them to the newest.
LOCK = $(VENV)/bin/uv pip compile --quiet --universal --generate-hashes \
	--custom-compile-command 'make lock' $(LOCK_FLAGS)

lock: $(STAMP)
	$(LOCK) --extra huawei pyproject.toml -o requirements/image.txt
	$(PY) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], sep='\n')" \
		| $(LOCK) - -o requirements/build.txt

# Every Python pyproject.toml claims besides .venv's (3.11): the unit tier and the provider
# SDKs against the emulator, each in .venv-3.X. The interpreter is python3.X on PATH, else
# pyenv's build ($(PYENV_ROOT)/versions/3.X.*); PYTHON_3.X=/path/to/python3.X overrides.
# `make -j2 pythons` runs them side by side.
OTHER_PYTHONS ?= 3.12 3.13
PYTHONS_TESTS ?= tests/unit tests/integration/emulator
PYENV_ROOT ?= $(HOME)/.pyenv

pythons: $(OTHER_PYTHONS:%=python-%)

.PRECIOUS: .venv-%/.installed-stamp  # kept: not an intermediate file of python-%

python-%: .venv-%/.installed-stamp
	.venv-$*/bin/python -m pytest -q -p no:cacheprovider $(PYTHONS_TESTS)

# Made with uv (a dev dependency, hence $(STAMP)): 71 s with a cold cache at load 20, where
# pip took 2-3 min per virtualenv.
.venv-%/.installed-stamp: pyproject.toml $(STAMP)
	@py='$(PYTHON_$*)'; \
	if [ -z "$$py" ]; then \
		for candidate in python$* $(PYENV_ROOT)/versions/$*.*/bin/python$*; do \
			if $$candidate -c '' 2>/dev/null; then py=$$candidate; break; fi; \
		done; \
	fi; \
	if [ -z "$$py" ] || ! $$py -c 'import sys; assert sys.version.startswith("$*.")' 2>/dev/null; then \
		echo "make pythons: no Python $* (tried $${py:-python$* on PATH and $(PYENV_ROOT)/versions/$*.*/bin/python$*})." >&2; \
		echo "  pyproject.toml claims Python $*: install it, or name it: make pythons PYTHON_$*=/path/to/python$*" >&2; \
		exit 1; \
	fi; \
	echo "make pythons: Python $* is $$py"; \
	rm -rf .venv-$* && $(VENV)/bin/uv venv --quiet --python $$py .venv-$*
	$(VENV)/bin/uv pip install --quiet --python .venv-$*/bin/python -e '.[test]'
	touch $@
