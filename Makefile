# The two commands: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test lint bench bench-intake bench-execution bench-streams bench-admin emulator clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tvtrader needs Python 3.11 or newer (set PYTHON=python3.12)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(PY) -m tvtrader.launcher

test: $(VENV)/.installed
	$(PY) -m tvtrader.testrun $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run
	DJANGO_SETTINGS_MODULE=tvtrader.settings $(VENV)/bin/lint-imports

# Webhook intake benchmark (gunicorn + PostgreSQL + Redis; docs/performance.md).
bench-intake: $(VENV)/.installed
	$(PY) -m bench.intake $(ARGS)

clean:
	rm -rf $(VENV) staticfiles .pytest_cache

# Whole chain, every traffic shape, on the default stack (bench/execution.py; docs/performance.md).
bench-execution: $(VENV)/.installed
	$(PY) bench/execution.py $(ARGS)

# Order streams: market order over REST → fill known through the private WebSocket stream.
bench-streams: $(VENV)/.installed
	$(PY) bench/streams.py $(ARGS)

emulator: $(VENV)/.installed
	$(PY) -m emulator --port 8800

# Admin speed on 1,000,000 signals in a PostgreSQL database of its own (see bench/admin.py).
bench-admin: $(VENV)/.installed
	$(PY) bench/admin.py
