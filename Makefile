# Every target does its own set-up: on a fresh machine `make run` and `make test` are enough.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC := torch==2.13.0
REQUIREMENTS := requirements-training.txt requirements-dev.txt
# The stamp's name is a checksum of what is installed, so changed requirements reinstall
# and an unchanged set-up is a no-op.
SETUP_KEY := $(shell (echo '$(TORCH_SPEC)'; cat $(REQUIREMENTS)) | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.setup-$(SETUP_KEY)

WORKSPACE := $(CURDIR)/workspace
TEST_TIMEOUT ?= 1800
QUICK ?= 1

.PHONY: setup services notebooks check test run bench look clean distclean

setup: $(STAMP)

$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -r requirements-training.txt -r requirements-dev.txt
	@rm -f $(VENV)/.setup-*
	@touch $@

# Servers the tests start themselves (a throwaway PostgreSQL from Debian's binaries, see
# tests/postgres_server.py): installs the package when missing, never starts a system service.
# Without root or apt-get it says so; the PostgreSQL tests then skip locally (and fail in CI).
PG_BIN_GLOB := /usr/lib/postgresql/*/bin/initdb

services:
	@if ls $(PG_BIN_GLOB) >/dev/null 2>&1; then \
		echo "postgresql: $$(ls $(PG_BIN_GLOB) | tail -1)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; \
	else \
		echo "postgresql is not installed and cannot be installed here (needs root and apt-get):"; \
		echo "  sudo apt-get install postgresql   # else the PostgreSQL tests are skipped"; \
	fi

notebooks: setup
	$(PY) build_notebooks.py

check: setup
	$(PY) -m ruff check .
	$(PY) build_notebooks.py --check

test: setup check
	$(PY) -m pytest --timeout=$(TEST_TIMEOUT)

# The main job: the training notebook, headless, CPU preset; everything it writes lands in workspace/.
run: setup notebooks
	@mkdir -p "$(WORKSPACE)"
	PYTHONPATH="$(CURDIR)" $(PY) -m utils.notebook_exec notebooks/training.ipynb \
		--out "$(WORKSPACE)/training.executed.ipynb" --workdir "$(WORKSPACE)" \
		-p preset=cpu -p vocab_size=2048 -p time_presets=cpu -p viz_interval=100 \
		-p workspace_dir="$(WORKSPACE)"

# Look at every figure as a reader sees it: both notebooks executed with their smoke values
# (LOOK_ARGS=--from-artifacts takes the executed copies of the last test run instead),
# as nbconvert HTML, screenshotted 1000 px wide by headless Chromium into .look/; then the
# same executed notebooks in JupyterLab (1280 x 900 window, file browser open) through
# chromium-driver into .look/lab/, with each figure's displayed width and smallest text in
# px printed. Not part of `make test`: open the PNGs after any figure change.
LOOK_ARGS ?=
LOOK_LAB_ARGS ?=
look: setup notebooks
	@(command -v chromium >/dev/null && command -v chromedriver >/dev/null) || \
		(apt-get update && apt-get install -y chromium chromium-driver)
	PYTHONPATH="$(CURDIR)" $(PY) -m utils.look --out "$(CURDIR)/.look" $(LOOK_ARGS)
	PYTHONPATH="$(CURDIR)" $(PY) -m utils.look_lab --out "$(CURDIR)/.look" $(LOOK_LAB_ARGS)

# The stores and trainers the benchmarks compare against, installed only for `make bench`,
# with torch, numpy, pandas and protobuf held at the versions already installed.
BENCH_STAMP := $(VENV)/.bench-$(shell cat requirements-bench.txt | cksum | cut -d' ' -f1)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip freeze | grep -iE '^(torch|numpy|pandas|protobuf)==' > $(VENV)/bench-constraints.txt
	$(PIP) install -r requirements-bench.txt -c $(VENV)/bench-constraints.txt
	@rm -f $(VENV)/.bench-*
	@touch $@

# Short runs by default: --quick goes to every script that declares it (QUICK= for full runs).
bench: setup $(BENCH_STAMP)
	@set -e; for script in bench/*.py; do \
		[ -e "$$script" ] || { echo "no benchmarks in bench/"; break; }; \
		case "$$(basename "$$script")" in _*) continue;; esac; \
		args=""; if [ -n "$(QUICK)" ] && grep -q -- '"--quick"' "$$script"; then args="--quick"; fi; \
		echo "== $$script $$args"; \
		PYTHONPATH="$(CURDIR)" $(PY) "$$script" $$args; \
	done

clean:
	rm -rf workspace .test-artifacts .look .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
