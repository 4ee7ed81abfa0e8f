# famefabric — everyday commands. `make run` brings a fresh machine to a working chat;
# `make test` runs the whole test suite (CI runs exactly that).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR := .run
# The chat client attaches to the sentinel that `make start` runs (on the port it was
# started with), unless FAME_DIRECT_ADMISSION_URL says otherwise.
CHAT := scripts/services.sh chat

.PHONY: help install run run-verbose chat start stop restart status logs test test-fast lint format bench bench-quick docker-check lock clean cluster test-cluster

help:
	@echo "make run          start sentinel + chat agent if needed, then chat (installs what it needs)"
	@echo "make run-verbose  the same, printing every envelope"
	@echo "make start/stop   start or stop sentinel + chat agent in the background (Docker if available)"
	@echo "make restart      stop, then start with the settings given now"
	@echo "make status/logs  what runs, and its logs"
	@echo "make test         the whole test suite (also what CI runs)"
	@echo "make lint         ruff + mypy"
	@echo "make bench        benchmarks (make bench-quick for a short run)"
	@echo "make cluster      a local cluster: nats-server and 3 sentinels (docs/CLUSTER.md)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "famefabric needs Python 3.11 or newer (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip 2>/dev/null || true
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,fast]'
	@touch $(STAMP)

install: $(STAMP)

run: install start
	@$(CHAT)

chat: install
	@$(CHAT)

run-verbose: install start
	@$(CHAT) --verbose

start: install
	@scripts/services.sh start

stop:
	@scripts/services.sh stop

restart: install
	@scripts/services.sh restart

status:
	@scripts/services.sh status

logs:
	@scripts/services.sh logs

test: install
	@scripts/test.sh

cluster: install
	@scripts/cluster.sh

test-cluster: install
	@scripts/ensure-nats.sh >/dev/null
	$(BIN)/pytest -q tests/cluster tests/sentinel/cluster

test-fast: install
	$(BIN)/pytest -q -m "not slow and not interop"

lint: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples

bench: install
	$(BIN)/python -m benchmarks

bench-quick: install
	$(BIN)/python -m benchmarks --quick

docker-check: install
	@scripts/docker-check.sh

# Pin the images' dependencies again after changing pyproject.toml.
lock: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	@{ echo "# Pinned runtime dependencies of famefabric (with the fast extra), for the Docker images."; \
	  echo "# Regenerate after changing pyproject.toml: make lock"; \
	  $(BIN)/uv pip compile pyproject.toml --extra fast --python-version 3.12 --no-header -q; } > requirements.lock

clean:
	@scripts/services.sh stop
	rm -rf $(VENV) .venv-interop $(RUN_DIR) .pytest_cache .ruff_cache .mypy_cache
