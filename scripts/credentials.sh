#!/usr/bin/env bash
# Create the local fabric's credentials the first time (all files 0600, under .run/):
#   .run/auth-secret             the sentinel's HS256 secret (fame sentinel --auth-secret-file)
#   .run/tokens/agent.token      the chat agent: may serve chat@fame.fabric
#   .run/tokens/chat.token       `fame chat` (make chat): may call chat@fame.fabric
#   .run/tokens/admin.token      an administrator: may call everything, sees every conversation
#   .run/compose.env             the secret and the agent's token for `docker compose --env-file`
# Tokens are renewed when older than 30 days (they are valid for 90). Nothing is printed
# that contains a secret; processes get tokens through FAME_TOKEN_FILE, never argv.
# Usage: scripts/credentials.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR="${1:-${FAME_RUN_DIR:-.run}}"
BIN="${FAME_BIN:-.venv/bin}"
TTL=$((90 * 24 * 3600))
umask 077
mkdir -p "$RUN_DIR/tokens"
chmod 700 "$RUN_DIR/tokens"

SECRET="$RUN_DIR/auth-secret"
if [ ! -s "$SECRET" ]; then
  "$BIN/python" -c 'import secrets; print(secrets.token_hex(32))' >"$SECRET"
  rm -f "$RUN_DIR"/tokens/*.token "$RUN_DIR/compose.env"
  echo "created a new auth secret in $SECRET"
fi
chmod 600 "$SECRET"

# mint NAME SUBJECT ARGS...: write $RUN_DIR/tokens/NAME.token unless a fresh one exists.
mint() {
  local name="$1" subject="$2"; shift 2
  local file="$RUN_DIR/tokens/$name.token"
  if [ -s "$file" ] && [ -z "$(find "$file" -mtime +30 2>/dev/null)" ]; then return; fi
  env -u FAME_JWT_AUDIENCE -u FAME_JWT_TRUSTED_ISSUER \
    "$BIN/fame" token create --auth-secret-file "$SECRET" --subject "$subject" --ttl "$TTL" "$@" \
    >"$file.new"
  chmod 600 "$file.new"
  mv "$file.new" "$file"
  echo "created $file (subject $subject)"
}

mint agent chat-agent --serve chat@fame.fabric
mint chat local-user --call chat@fame.fabric
mint admin admin --admin --call '>'

ENV_FILE="$RUN_DIR/compose.env"
if [ ! -s "$ENV_FILE" ] || [ "$RUN_DIR/tokens/agent.token" -nt "$ENV_FILE" ]; then
  {
    echo "FAME_AUTH_SECRET=$(cat "$SECRET")"
    echo "FAME_AGENT_TOKEN=$(cat "$RUN_DIR/tokens/agent.token")"
  } >"$ENV_FILE"
  chmod 600 "$ENV_FILE"
fi
