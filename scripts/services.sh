#!/usr/bin/env bash
# Start, stop and inspect the sentinel and the chat agent in the background.
# Uses Docker Compose when a Docker engine answers, local processes otherwise
# (pid and log files under .run/). Usage: scripts/services.sh start|stop|status|logs
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR="${FAME_RUN_DIR:-.run}"
BIN="${FAME_BIN:-.venv/bin}"
PORT="${FAME_LISTENER_PORT:-8000}"
LLM_PORT="${FAME_DEMO_LLM_PORT:-8011}"
HEALTH="http://127.0.0.1:${PORT}/fame/v1/attach/health"
mkdir -p "$RUN_DIR"

compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@";
  else docker-compose "$@"; fi
}

docker_usable() {
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 &&
    { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; }
}

alive() { [ -f "$RUN_DIR/$1.pid" ] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

# Wait until the sentinel's health endpoint reports at least $1 bound addresses.
wait_health() {
  "$BIN/python" - "$HEALTH" "$1" <<'PY'
import json, sys, time, urllib.request
url, want = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            if json.load(response).get("addresses", 0) >= want:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(f"timed out waiting for {url}")
PY
}

start_local() {
  if alive sentinel && alive agent; then
    echo "already running (local processes; 'make stop' stops them)"; return
  fi
  if ! alive sentinel; then
    "$BIN/fame" sentinel --port "$PORT" >"$RUN_DIR/sentinel.log" 2>&1 &
    echo $! >"$RUN_DIR/sentinel.pid"
  fi
  wait_health 0 || { echo "the sentinel did not start; see $RUN_DIR/sentinel.log"; tail -5 "$RUN_DIR/sentinel.log"; exit 1; }
  if [ -z "${OPENAI_API_KEY:-}" ] && [ -z "${OPENAI_BASE_URL:-}" ]; then
    echo "no OPENAI_API_KEY or OPENAI_BASE_URL: using the built-in echo server as the LLM"
    echo "(set OPENAI_API_KEY, or OPENAI_BASE_URL for a local server, then 'make stop start')"
    if ! alive llm; then
      "$BIN/python" -m famefabric.testing.openai_server --port "$LLM_PORT" >"$RUN_DIR/llm.log" 2>&1 &
      echo $! >"$RUN_DIR/llm.pid"
    fi
    export OPENAI_BASE_URL="http://127.0.0.1:${LLM_PORT}/v1" MODEL_NAME="${MODEL_NAME:-echo}"
  fi
  if ! alive agent; then
    FAME_DIRECT_ADMISSION_URL="ws://127.0.0.1:${PORT}/fame/v1/attach/ws/downstream" \
      FAME_SESSION_MAX_INITIAL_ATTEMPTS=5 \
      "$BIN/fame" agent chat >"$RUN_DIR/agent.log" 2>&1 &
    echo $! >"$RUN_DIR/agent.pid"
  fi
  wait_health 1 || { echo "the chat agent did not attach; see $RUN_DIR/agent.log"; tail -5 "$RUN_DIR/agent.log"; exit 1; }
  echo local >"$RUN_DIR/mode"
  echo "started sentinel (port $PORT) and chat agent as local processes; logs in $RUN_DIR/"
}

# The HTTP gateway (web chat + OpenAI-compatible API), a local process in both modes.
GATEWAY_PORT="${FAME_GATEWAY_PORT:-8080}"
start_gateway() {
  if ! alive gateway; then
    FAME_DIRECT_ADMISSION_URL="ws://127.0.0.1:${PORT}/fame/v1/attach/ws/downstream" \
      FAME_GATEWAY_PORT="$GATEWAY_PORT" \
      "$BIN/fame" gateway >"$RUN_DIR/gateway.log" 2>&1 &
    echo $! >"$RUN_DIR/gateway.pid"
  fi
  "$BIN/python" - "http://127.0.0.1:${GATEWAY_PORT}/healthz" <<'PY' || { echo "the gateway did not start; see $RUN_DIR/gateway.log"; tail -5 "$RUN_DIR/gateway.log"; exit 1; }
import sys, time, urllib.request
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=1):
            sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
  echo "web chat and OpenAI-compatible API: http://127.0.0.1:${GATEWAY_PORT}/ (API docs at /docs)"
}

stop_local() {
  for name in gateway agent llm sentinel; do
    if alive "$name"; then
      kill "$(cat "$RUN_DIR/$name.pid")" 2>/dev/null || true
      for _ in $(seq 50); do alive "$name" || break; sleep 0.1; done
      alive "$name" && kill -9 "$(cat "$RUN_DIR/$name.pid")" 2>/dev/null || true
      echo "stopped $name"
    fi
    rm -f "$RUN_DIR/$name.pid"
  done
}

case "${1:-}" in
  start)
    if [ -f "$RUN_DIR/mode" ] && [ "$(cat "$RUN_DIR/mode")" = docker ]; then
      compose up -d; echo "running with Docker Compose"; start_gateway; exit 0
    fi
    if docker_usable; then
      echo "a Docker engine answers: starting with Docker Compose"
      compose up -d --build
      echo docker >"$RUN_DIR/mode"
      wait_health 1
    else
      echo "no Docker engine: starting local processes"
      start_local
    fi
    start_gateway ;;
  stop)
    if [ -f "$RUN_DIR/mode" ] && [ "$(cat "$RUN_DIR/mode")" = docker ]; then compose down; fi
    stop_local
    rm -f "$RUN_DIR/mode" ;;
  status)
    mode=$(cat "$RUN_DIR/mode" 2>/dev/null || echo none)
    echo "mode: $mode"
    for name in sentinel agent llm gateway; do alive "$name" && echo "$name: running (pid $(cat "$RUN_DIR/$name.pid"))"; done
    "$BIN/python" -c "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1], timeout=1).read().decode())" "$HEALTH" 2>/dev/null || echo "sentinel: not answering on port $PORT" ;;
  logs)
    tail -n 50 "$RUN_DIR"/*.log 2>/dev/null || echo "no logs" ;;
  *)
    echo "usage: $0 start|stop|status|logs" >&2; exit 2 ;;
esac
