#!/usr/bin/env bash
# The whole test suite: prepares the interop peer (Naylence on Python >= 3.12) and a
# redis-server, then runs pytest. Under CI a missing peer or Redis fails the run
# instead of skipping those tests.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ -n "${CI:-}" ]; then
  export FAME_REQUIRE_INTEROP=1 FAME_REQUIRE_REDIS=1
fi

if ! scripts/interop-venv.sh; then
  echo "interop peer not installed: interop tests will skip (or fail under CI)" >&2
fi
if ! scripts/ensure-redis.sh >/dev/null; then
  echo "redis-server not available: Redis tests will skip (or fail under CI)" >&2
fi

.venv/bin/pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$status"
