#!/usr/bin/env bash
# Check the Docker files without building: every compose file validates (docker compose or
# docker-compose), every Dockerfile passes hadolint (installed with the dev extra).
# Usage: scripts/docker-check.sh   (make docker-check)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${FAME_BIN:-.venv/bin}"
status=0

if docker compose version >/dev/null 2>&1; then compose=(docker compose);
elif command -v docker-compose >/dev/null 2>&1; then compose=(docker-compose);
else compose=(); fi
for file in docker-compose.yml examples/stateful-conversation/docker-compose.yml; do
  if [ ${#compose[@]} -eq 0 ]; then
    echo "skip $file: neither 'docker compose' nor docker-compose is installed"; continue
  fi
  if "${compose[@]}" -f "$file" config -q; then echo "ok   $file"; else echo "FAIL $file"; status=1; fi
done

hadolint="$BIN/hadolint"
[ -x "$hadolint" ] || hadolint=$(command -v hadolint || true)
for file in Dockerfile examples/stateful-conversation/Dockerfile; do
  if [ -z "$hadolint" ]; then
    echo "skip $file: hadolint is not installed (make install adds it)"; status=1; continue
  fi
  if "$hadolint" "$file"; then echo "ok   $file"; else echo "FAIL $file"; status=1; fi
done
exit "$status"
