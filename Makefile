# Everyday commands. `make demo` and `make test` set the machine up first
# (scripts/setup.sh: Debian packages + .venv; a no-op when nothing changed).
#
#   make setup                 install what is missing
#   make demo                  run the simulated SECCM demo in napari
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

# Without any display (ssh, container), run the demo in a virtual X server
# instead of letting Qt abort.
demo: setup
	@if [ -z "$$DISPLAY" ] && [ -z "$$WAYLAND_DISPLAY" ] && command -v xvfb-run >/dev/null; then \
		echo "[demo] no display: running under xvfb-run (nothing will be shown)"; \
		exec xvfb-run -a -s "-screen 0 1600x1000x24" $(VENV)/bin/napari-seccm demo $(DEMO_ARGS); \
	else \
		exec $(VENV)/bin/napari-seccm demo $(DEMO_ARGS); \
	fi

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
