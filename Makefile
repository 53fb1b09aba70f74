# Two commands for a fresh machine with python3, make and apt:
#   make demo   install the project and what the demo needs, then serve it on
#               http://127.0.0.1:8000 (DEMO_PORT=8001 make demo for another port)
#   make test   install the project and every development tool, then every check:
#               ruff, mypy, the docs site (mkdocs build --strict), the whole pytest suite
# CI runs .ci/run, which is `make test` and the unit tests on Python 3.10 and 3.13.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
# The development tools are the `dev` dependency group (PEP 735) of pyproject.toml, which the
# package does not publish; pip installs a group with --group (pip 25.1 or later).
DEV_INSTALL  := -e . --group dev
DEMO_INSTALL := -e . --group demo

.PHONY: setup system-deps demo test lint typecheck docs pytest test-versions bench bench-http bench-yielding clean

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

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(DEV_INSTALL)
	touch $(STAMP)

# The demo's own stamp, so `make demo` installs four packages rather than every tool (and a
# machine that ran `make setup` has them all already).
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(DEMO_INSTALL)
	touch $(DEMO_STAMP)

# `make demo DEMO_PORT=8001` or `DEMO_PORT=8001 make demo` (DEMO_HOST, DEMO_SMTP_PORT... reach
# the demo through the environment). On a busy port the demo picks a free one and says which.
demo: $(DEMO_STAMP)
	$(BIN)/python -m demo_app $(if $(DEMO_PORT),--port $(DEMO_PORT))

test: setup system-deps lint typecheck docs pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy --strict src
	$(BIN)/mypy --strict demo_app
	$(BIN)/mypy --strict tests

# The docs site, built strictly (a broken link or reference fails) into build/site (see
# mkdocs.yml). NO_MKDOCS_2_WARNING quiets Material's banner about its end of life (May 2027).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

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
		if [ ! -f $$venv/.installed ] || [ pyproject.toml -nt $$venv/.installed ]; then \
			$$py -m venv $$venv && \
			$$venv/bin/python -m pip install --quiet --upgrade pip && \
			$$venv/bin/python -m pip install --quiet $(DEV_INSTALL) && touch $$venv/.installed || exit 1; \
		fi; \
		echo "== unit tests on Python $$v ($$py)"; \
		$$venv/bin/pytest -q -m 'not e2e' || exit 1; \
	done

# The core benchmark (~90 s), then what tracing costs per job with the real SDK (~30 s).
bench: setup
	$(BIN)/python benchmarks/core.py
	$(BIN)/python benchmarks/tracing.py

# uvicorn under wrk (Debian's package): ~10 minutes; `--quick` for a smoke run.
bench-http: setup system-deps
	$(BIN)/python benchmarks/http.py

# /noop under wrk while jobs burn CPU, yield_to_requests on and off: ~16 minutes.
bench-yielding: setup system-deps
	$(BIN)/python benchmarks/yielding.py

clean:
	rm -rf $(VENV) .venv-3.10 .venv-3.13 build dist .mypy_cache .ruff_cache
