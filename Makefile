# Everyday commands. `make demo` and `make test` set the machine up first
# (scripts/setup.sh: Debian packages + .venv; a no-op when nothing changed).
#
#   make setup                 install what is missing
#   make demo                  run the simulated SECCM demo (stores + PNG figure)
#   make test                  whole pytest suite (GUI tests under Xvfb)
#   make test PYTEST_ARGS="-k gui -x"
#   make lint                  ruff check + ruff format --check
#   make bench                 run every benchmarks/*.py

VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
DEMO_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup demo test lint bench

help:
	@sed -n 's/^#   //p' Makefile

setup:
	@VENV=$(VENV) bash scripts/setup.sh

# The demo is headless (it writes stores and a PNG figure): no display needed.
demo: setup
	$(VENV)/bin/napari-seccm demo $(DEMO_ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	@set -e; found=0; \
	for f in benchmarks/*.py; do \
		[ -e "$$f" ] || continue; found=1; \
		echo "== $$f"; $(PY) "$$f"; \
	done; \
	[ $$found = 1 ] || echo "no benchmarks/*.py"
