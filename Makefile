# The two commands: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test chaos lint lock bench bench-intake bench-execution bench-streams bench-admin emulator clean

# Two sets, each installed from its lock (every dependency pinned, with hashes; `make lock`):
# `make run` needs only the runtime set, `make test`/`make lint` the dev set on top of it.
$(VENV)/.installed-runtime: requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tvtrader needs Python 3.11 or newer (set PYTHON=python3.12)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) deploy/pip_install.py requirements.lock
	@touch $@

$(VENV)/.installed-dev: requirements-dev.lock requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tvtrader needs Python 3.11 or newer (set PYTHON=python3.12)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) deploy/pip_install.py requirements-dev.lock
	@touch $(VENV)/.installed-runtime $@

# Regenerate the locks from requirements*.txt, keeping every pin that still fits (ARGS=--upgrade
# moves them all to the newest releases). Resolved for every platform and Python >= 3.11, from
# the package index pip is configured with (PIP_INDEX_URL or pip's index-url), else the default.
UV_COMPILE = $(VENV)/bin/uv pip compile --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" --quiet $$index $(ARGS)
lock: $(VENV)/.installed-dev
	@echo "==> resolving requirements*.txt into requirements*.lock"
	@index=$${PIP_INDEX_URL:-$$($(PY) -m pip config get global.index-url 2>/dev/null || true)}; \
	index=$${index:+--default-index $$index}; \
	$(UV_COMPILE) requirements.txt -o requirements.lock && \
	$(UV_COMPILE) --no-deps requirements-embedded-redis.txt -o requirements-embedded-redis.lock && \
	$(UV_COMPILE) -c requirements.lock requirements-dev.txt -o requirements-dev.lock

run: $(VENV)/.installed-runtime
	$(PY) -m tvtrader.launcher

test: $(VENV)/.installed-dev
	$(PY) -m tvtrader.testrun $(ARGS)

# The whole fault suite (tests/faults/chaos_suite.py; docs/operations.md): real processes, one
# fault at a time and all at once, a table per scenario. CHAOS_ROUNDS=3 runs it three times.
chaos: $(VENV)/.installed-dev
	$(PY) -m tvtrader.testrun tests/faults/chaos_suite.py -p no:cacheprovider -q $(ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run
	DJANGO_SETTINGS_MODULE=tvtrader.settings $(VENV)/bin/lint-imports

# Webhook intake benchmark (gunicorn + PostgreSQL + Redis; docs/performance.md).
bench-intake: $(VENV)/.installed-dev
	$(PY) -m bench.intake $(ARGS)

clean:
	rm -rf $(VENV) staticfiles .pytest_cache

# Whole chain, every traffic shape, on the default stack (bench/execution.py; docs/performance.md).
bench-execution: $(VENV)/.installed-dev
	$(PY) bench/execution.py $(ARGS)

# Order streams: market order over REST → fill known through the private WebSocket stream.
bench-streams: $(VENV)/.installed-dev
	$(PY) bench/streams.py $(ARGS)

emulator: $(VENV)/.installed-dev
	$(PY) -m emulator --port 8800

# Admin speed on 1,000,000 signals in a PostgreSQL database of its own (see bench/admin.py).
bench-admin: $(VENV)/.installed-dev
	$(PY) bench/admin.py
