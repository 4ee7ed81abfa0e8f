#!/usr/bin/env bash
# Start, stop and inspect the sentinel and the chat agent in the background.
#
# Local processes run in a session of their own (setsid), so Ctrl-C in the terminal that
# started them (in `make run`'s chat, say) reaches only the chat, never them. Their pid,
# log and settings files live under .run/ (FAME_RUN_DIR): the port and LLM they were
# started with are remembered, so `status`, `chat` and a second `start` use the same ones.
# FAME_SERVICES=docker uses Docker Compose, =local local processes; the default (auto)
# uses Docker Compose when a Docker engine answers.
#
# Usage: scripts/services.sh start|stop|restart|status|logs|urls|chat [fame chat options]
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR="${FAME_RUN_DIR:-.run}"
BIN="${FAME_BIN:-.venv/bin}"
SETTINGS="$RUN_DIR/settings"
mkdir -p "$RUN_DIR"

# What the running services were started with (empty when nothing was started).
saved_port="" saved_llm="" saved_model="" saved_key="" saved_store=""
# shellcheck disable=SC1090
[ -f "$SETTINGS" ] && . "$SETTINGS"

# The port: asked for now, else the one the services were started with, else 8000.
PORT="${FAME_LISTENER_PORT:-${saved_port:-8000}}"
LLM_PORT="${FAME_DEMO_LLM_PORT:-8011}"

health_url() { echo "http://127.0.0.1:$1/fame/v1/attach/health"; }
attach_url() { echo "ws://127.0.0.1:$1/fame/v1/attach/ws/downstream"; }

# The sentinel requires tokens: scripts/credentials.sh creates the secret and the
# per-process tokens (0600) under $RUN_DIR the first time; processes read them from
# files (FAME_TOKEN_FILE, --auth-secret-file), Docker from the env file, never argv.
credentials() { FAME_BIN="$BIN" scripts/credentials.sh "$RUN_DIR" >/dev/null; }

compose() {
  if docker compose version >/dev/null 2>&1; then docker compose --env-file "$RUN_DIR/compose.env" "$@";
  else docker-compose --env-file "$RUN_DIR/compose.env" "$@"; fi
}

docker_usable() {
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 &&
    { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; }
}

use_docker() {
  case "${FAME_SERVICES:-auto}" in
    docker) return 0 ;;
    local) return 1 ;;
    auto) docker_usable ;;
    *) echo "FAME_SERVICES=${FAME_SERVICES} is not one of auto, local, docker" >&2; exit 2 ;;
  esac
}

alive() { [ -f "$RUN_DIR/$1.pid" ] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

# Run a command in the background in its own session, output to $RUN_DIR/NAME.log.
detach() {
  local name=$1; shift
  if command -v setsid >/dev/null 2>&1; then
    setsid "$@" </dev/null >"$RUN_DIR/$name.log" 2>&1 &
  else
    "$BIN/python" -c 'import os, sys; os.setsid(); os.execv(sys.argv[1], sys.argv[1:])' "$@" \
      </dev/null >"$RUN_DIR/$name.log" 2>&1 &
  fi
  echo $! >"$RUN_DIR/$name.pid"
}

# Succeed when nothing listens on TCP port $1 (of any local address).
port_free() {
  "$BIN/python" - "$1" <<'PY'
import socket, sys
with socket.socket() as sock:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("0.0.0.0", int(sys.argv[1])))
    except OSError:
        sys.exit(1)
PY
}

# Say what listens on TCP port $1, as far as the system tells.
port_holder() {
  local found=""
  if command -v ss >/dev/null 2>&1; then
    found=$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(.*' | head -1 || true)
  fi
  if [ -z "$found" ] && command -v lsof >/dev/null 2>&1; then
    found=$(lsof -nP -iTCP:"$1" -sTCP:LISTEN 2>/dev/null | awk 'NR==2 {print $1" (pid "$2")"}' || true)
  fi
  echo "${found:-another program (not one this script started)}"
}

refuse_taken_port() {  # $1 port, $2 what it was meant for, $3 the variable that moves it
  echo "port $1 (for the $2) is in use by $(port_holder "$1")." >&2
  echo "Stop that program, or pick another port: $3=<port> make start" >&2
  exit 1
}

# Wait until the sentinel on port $1 answers with at least $2 bound addresses, while
# process $3 (the one expected to get there) lives.
wait_health() {
  "$BIN/python" - "$(health_url "$1")" "$2" "${3:-0}" <<'PY'
import json, os, sys, time, urllib.request
url, want, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    if pid:
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit("it exited")
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            if json.load(response).get("addresses", 0) >= want:
                sys.exit(0)
    except (OSError, ValueError):
        pass
    time.sleep(0.1)
sys.exit(f"timed out after 20 s waiting for {url}")
PY
}

failed() {  # $1 what, $2 log name
  echo "the $1 did not start; the end of $RUN_DIR/$2.log:" >&2
  tail -n 8 "$RUN_DIR/$2.log" >&2 || true
  exit 1
}

# The settings asked for now, in the words the settings file uses.
requested_llm() {
  if [ -n "${OPENAI_BASE_URL:-}" ]; then echo "$OPENAI_BASE_URL";
  elif [ -n "${OPENAI_API_KEY:-}" ]; then echo "openai";
  else echo "echo"; fi
}

key_hash() {  # a short digest to notice a changed key; the key itself is never written
  [ -n "${OPENAI_API_KEY:-}" ] || { echo ""; return; }
  printf '%s' "$OPENAI_API_KEY" | "$BIN/python" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])'
}

# Warn when the settings given now differ from those the running services use.
check_settings() {
  local diffs=()
  if [ -n "${FAME_LISTENER_PORT:-}" ] && [ "$FAME_LISTENER_PORT" != "$saved_port" ]; then
    diffs+=("FAME_LISTENER_PORT=$FAME_LISTENER_PORT (running: port $saved_port)")
  fi
  if { [ -n "${OPENAI_API_KEY:-}" ] || [ -n "${OPENAI_BASE_URL:-}" ]; } && [ "$(requested_llm)" != "$saved_llm" ]; then
    diffs+=("LLM $(requested_llm) (running: $saved_llm)")
  elif [ -n "${OPENAI_API_KEY:-}" ] && [ "$(key_hash)" != "$saved_key" ]; then
    diffs+=("a different OPENAI_API_KEY")
  fi
  if [ -n "${MODEL_NAME:-}" ] && [ "$MODEL_NAME" != "$saved_model" ]; then
    diffs+=("MODEL_NAME=$MODEL_NAME (running: ${saved_model:-the default})")
  fi
  if [ -n "${CHAT_STORE:-}" ] && [ "$CHAT_STORE" != "$saved_store" ]; then
    diffs+=("CHAT_STORE=$CHAT_STORE (running: ${saved_store:-the default})")
  fi
  if [ ${#diffs[@]} -gt 0 ]; then
    echo "warning: the services already run with other settings, so these are NOT used:" >&2
    printf '  %s\n' "${diffs[@]}" >&2
    echo "  to apply them: 'make restart' with the same settings (or 'make stop', then 'make start')" >&2
  fi
}

save_settings() {
  {
    printf 'saved_port=%q\n' "$PORT"
    printf 'saved_llm=%q\n' "$(requested_llm)"
    printf 'saved_model=%q\n' "${MODEL_NAME:-}"
    printf 'saved_key=%q\n' "$(key_hash)"
    printf 'saved_store=%q\n' "${CHAT_STORE:-}"
  } >"$SETTINGS"
}

show_urls() {
  echo "  sentinel   $(attach_url "$PORT")   (health: $(health_url "$PORT"))"
  echo "  chat agent chat@fame.fabric   (LLM: ${saved_llm:-$(requested_llm)}${saved_model:+, model $saved_model})"
  if alive llm; then echo "  echo LLM   http://127.0.0.1:${LLM_PORT}/v1"; fi
  echo "  logs       $RUN_DIR/*.log   ('make logs'; 'make stop' stops them)"
}

start_local() {
  if alive sentinel && alive agent; then
    echo "already running (local processes):"
    show_urls
    check_settings
    return
  fi
  if ! alive sentinel; then
    port_free "$PORT" || refuse_taken_port "$PORT" sentinel FAME_LISTENER_PORT
    detach sentinel "$BIN/fame" sentinel --host 127.0.0.1 --port "$PORT" \
      --auth-secret-file "$RUN_DIR/auth-secret"
  fi
  wait_health "$PORT" 0 "$(cat "$RUN_DIR/sentinel.pid")" || failed sentinel sentinel
  if [ "$(requested_llm)" = echo ]; then
    echo "no OPENAI_API_KEY or OPENAI_BASE_URL: using the built-in echo server as the LLM"
    echo "(set OPENAI_API_KEY, or OPENAI_BASE_URL for a local server, then 'make restart')"
    if ! alive llm; then
      port_free "$LLM_PORT" || refuse_taken_port "$LLM_PORT" "echo LLM" FAME_DEMO_LLM_PORT
      detach llm "$BIN/python" -m famefabric.testing.openai_server --port "$LLM_PORT" \
        --token-delay "${FAME_DEMO_TOKEN_DELAY:-0.02}"
    fi
    export OPENAI_BASE_URL="http://127.0.0.1:${LLM_PORT}/v1" MODEL_NAME="${MODEL_NAME:-echo}"
    saved_llm=echo
  else
    saved_llm=$(requested_llm)
  fi
  saved_model="${MODEL_NAME:-}"
  if ! alive agent; then
    FAME_DIRECT_ADMISSION_URL="$(attach_url "$PORT")" FAME_SESSION_MAX_INITIAL_ATTEMPTS=5 \
      FAME_TOKEN= FAME_ADMISSION_TOKEN_URL= FAME_TOKEN_FILE="$RUN_DIR/tokens/agent.token" \
      detach agent "$BIN/fame" agent chat
  fi
  wait_health "$PORT" 1 "$(cat "$RUN_DIR/agent.pid")" || failed "chat agent" agent
  [ "$saved_llm" = echo ] && unset OPENAI_BASE_URL
  save_settings
  echo local >"$RUN_DIR/mode"
  echo "started as local processes, in their own session (Ctrl-C here does not stop them):"
  show_urls
}

# The HTTP gateway (web chat + OpenAI-compatible API), a local process in both modes.
GATEWAY_PORT="${FAME_GATEWAY_PORT:-8080}"
start_gateway() {
  if ! alive gateway; then
    port_free "$GATEWAY_PORT" || refuse_taken_port "$GATEWAY_PORT" gateway FAME_GATEWAY_PORT
    rm -f "$RUN_DIR/login-link"
    # Users' tokens are checked with the sentinel's secret; the login link signs the web
    # page in once with the local chat token (the same subject as 'make chat').
    FAME_DIRECT_ADMISSION_URL="$(attach_url "$PORT")" FAME_GATEWAY_PORT="$GATEWAY_PORT" \
      FAME_GATEWAY_LOGIN_TOKEN_FILE="$RUN_DIR/tokens/chat.token" \
      FAME_GATEWAY_LOGIN_LINK_FILE="$RUN_DIR/login-link" \
      detach gateway "$BIN/fame" gateway --auth-secret-file "$RUN_DIR/auth-secret"
  fi
  "$BIN/python" - "http://127.0.0.1:${GATEWAY_PORT}/healthz" <<'PY' || failed gateway gateway
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
  echo "  web chat and OpenAI-compatible API: http://127.0.0.1:${GATEWAY_PORT}/   (API docs: /docs)"
  if [ -s "$RUN_DIR/login-link" ]; then
    echo "  sign in to the web chat once with: $(cat "$RUN_DIR/login-link")"
    echo "  (the link works once, for 10 minutes; 'make restart' makes a new one)"
  fi
}

stop_local() {
  for name in gateway agent llm sentinel; do
    if alive "$name"; then
      kill "$(cat "$RUN_DIR/$name.pid")" 2>/dev/null || true
      for _ in $(seq 50); do alive "$name" || break; sleep 0.1; done
      if alive "$name"; then kill -9 "$(cat "$RUN_DIR/$name.pid")" 2>/dev/null || true; fi
      echo "stopped $name"
    fi
    rm -f "$RUN_DIR/$name.pid"
  done
  rm -f "$SETTINGS"
}

start() {
  credentials
  if [ -f "$RUN_DIR/mode" ] && [ "$(cat "$RUN_DIR/mode")" = docker ]; then
    compose up -d; echo "running with Docker Compose"; start_gateway; return
  fi
  if use_docker; then
    echo "a Docker engine answers: starting with Docker Compose (FAME_SERVICES=local: local processes)"
    compose up -d --build
    echo docker >"$RUN_DIR/mode"
    wait_health 8000 1 || { echo "the services did not answer; see 'docker compose logs'" >&2; exit 1; }
    PORT=8000 save_settings
  else
    start_local
  fi
  start_gateway
}

stop() {
  if [ -f "$RUN_DIR/mode" ] && [ "$(cat "$RUN_DIR/mode")" = docker ]; then compose down; fi
  stop_local
  rm -f "$RUN_DIR/mode"
}

status() {
  local mode
  mode=$(cat "$RUN_DIR/mode" 2>/dev/null || echo "not started")
  echo "mode: $mode"
  for name in sentinel agent llm gateway; do
    if alive "$name"; then echo "$name: running (pid $(cat "$RUN_DIR/$name.pid"))";
    elif [ -f "$RUN_DIR/$name.pid" ]; then echo "$name: NOT running (exited; see $RUN_DIR/$name.log)"; fi
  done
  if "$BIN/python" -c "import urllib.request, sys; print('sentinel on port ' + sys.argv[2] + ': ' + urllib.request.urlopen(sys.argv[1], timeout=1).read().decode())" "$(health_url "$PORT")" "$PORT" 2>/dev/null; then
    show_urls
  else
    echo "sentinel: not answering on port $PORT"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; saved_port="" saved_llm="" saved_model="" saved_key="" saved_store=""
    PORT="${FAME_LISTENER_PORT:-8000}"; start ;;
  status) status ;;
  urls) show_urls ;;
  logs)
    found=0
    for log in "$RUN_DIR"/*.log; do
      [ -f "$log" ] || continue
      found=1; echo "== $log"; tail -n 30 "$log"
    done
    [ "$found" = 1 ] || echo "no logs in $RUN_DIR/ (nothing started yet)" ;;
  chat)
    shift
    export FAME_DIRECT_ADMISSION_URL="${FAME_DIRECT_ADMISSION_URL:-$(attach_url "$PORT")}"
    # The chat token that `make start` created, unless the caller brings its own.
    if [ -z "${FAME_TOKEN:-}${FAME_TOKEN_FILE:-}${FAME_ADMISSION_TOKEN_URL:-}" ] &&
      [ -f "$RUN_DIR/tokens/chat.token" ]; then
      export FAME_TOKEN_FILE="$RUN_DIR/tokens/chat.token"
    fi
    if [ -t 0 ]; then
      # Job control gives the chat a process group of its own as the terminal's foreground:
      # Ctrl-C then reaches the chat (which stops a reply, or ends) and not `make` around it.
      set -m
      status=0; "$BIN/fame" chat "$@" || status=$?
      exit "$status"
    fi
    exec "$BIN/fame" chat "$@" ;;
  *)
    echo "usage: $0 start|stop|restart|status|logs|urls|chat [fame chat options]" >&2; exit 2 ;;
esac
