#!/usr/bin/env bash
# The whole test suite: prepares the interop peer (Naylence on Python >= 3.12), Chromium and a
# redis-server, then runs pytest. Under CI a missing peer, browser or Redis fails the run
# instead of skipping those tests.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ -n "${CI:-}" ]; then
  export FAME_REQUIRE_INTEROP=1 FAME_REQUIRE_REDIS=1 FAME_REQUIRE_BROWSER=1
fi

if ! scripts/interop-venv.sh; then
  echo "interop peer not installed: interop tests will skip (or fail under CI)" >&2
fi
if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
  # To validate the compose files (tests/test_docker_files.py); best effort.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -qq docker-compose >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq docker-compose >/dev/null 2>&1; } ||
      echo "docker-compose not installable: compose files will not be validated" >&2
  fi
fi
if ! scripts/ensure-chromium.sh >/dev/null; then
  echo "chromium not available: browser tests will skip (or fail under CI)" >&2
fi
if ! scripts/ensure-redis.sh >/dev/null; then
  echo "redis-server not available: Redis tests will skip (or fail under CI)" >&2
fi
if ! scripts/ensure-nats.sh >/dev/null; then
  echo "nats-server not available: cluster tests will skip (or fail under CI)" >&2
fi

echo "== lint: ruff, mypy" >&2
.venv/bin/ruff check src tests benchmarks examples || exit 1
.venv/bin/ruff format --check --quiet src tests benchmarks examples || exit 1
.venv/bin/mypy || exit 1

.venv/bin/pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$status"
