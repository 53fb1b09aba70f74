# Two commands for a fresh machine with python3, make and apt:
#   make demo   set up, then serve the demo app on http://127.0.0.1:8000
#   make test   set up, then every check: ruff, mypy, the whole pytest suite
# CI runs .ci/run, which is `make test` and the unit tests on Python 3.10 and 3.13.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup system-deps demo test lint typecheck pytest test-versions bench bench-http clean

# Debian packages the tests start for real: Chromium for the dashboard's browser tests,
# redis-server for the taskiq engine, wrk for the HTTP benchmark.
APT_PACKAGES := chromium redis-server wrk

setup: $(STAMP)

# Installs only what is missing, so a machine that has them needs neither apt nor root.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/python -m demo_app

test: setup system-deps lint typecheck pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy --strict src
	$(BIN)/mypy --strict demo_app
	$(BIN)/mypy --strict tests/typing

pytest: setup
	$(BIN)/pytest

# The unit tests (not the e2e suite) on the oldest and newest Python we support. The
# interpreters come from pyenv (installed on these machines); the shims only resolve the
# global version, so look in pyenv's own folder first.
test-versions:
	@for v in 3.10 3.13; do \
		py=$$(ls -d $$(pyenv root 2>/dev/null)/versions/$$v.*/bin/python$$v 2>/dev/null | tail -n 1); \
		[ -n "$$py" ] || py=$$(command -v python$$v); \
		if [ -z "$$py" ]; then \
			echo "Python $$v not found (pyenv install $$v)"; \
			if [ "$${CI:-}" = true ]; then exit 1; else continue; fi; \
		fi; \
		venv=.venv-$$v; \
		if [ ! -f $$venv/.installed ]; then \
			$$py -m venv $$venv && \
			$$venv/bin/python -m pip install --quiet --upgrade pip && \
			$$venv/bin/python -m pip install --quiet -e '.[dev]' && touch $$venv/.installed || exit 1; \
		fi; \
		echo "== unit tests on Python $$v ($$py)"; \
		$$venv/bin/pytest -q -m 'not e2e' || exit 1; \
	done

bench: setup
	$(BIN)/python benchmarks/core.py

# uvicorn under wrk (Debian's package): ~4 minutes; `--quick` for a smoke run.
bench-http: setup system-deps
	$(BIN)/python benchmarks/http.py

clean:
	rm -rf $(VENV) .venv-3.10 .venv-3.13 build dist .mypy_cache .ruff_cache
