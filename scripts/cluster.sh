#!/usr/bin/env bash
# `make cluster`: a local cluster of sentinels over NATS, in the foreground until Ctrl-C.
#
# Starts one nats-server (installed by scripts/ensure-nats.sh if needed) on
# 127.0.0.1:${FAME_CLUSTER_NATS_PORT:-4222} and ${FAME_CLUSTER_SENTINELS:-3} sentinels on
# ports 8001, 8002, ... (ids sentinel-1, sentinel-2, ...), all joined to it.
# Nodes take every sentinel's URL, comma-separated, and fail over between them:
#
#   FAME_DIRECT_ADMISSION_URL=ws://127.0.0.1:8001/fame/v1/attach/ws/downstream,ws://127.0.0.1:8002/fame/v1/attach/ws/downstream fame agent chat
#
# Logs go to .run/cluster/. Ctrl-C (or SIGTERM) stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_PORT="${FAME_CLUSTER_NATS_PORT:-4222}"
COUNT="${FAME_CLUSTER_SENTINELS:-3}"
FIRST_PORT="${FAME_CLUSTER_FIRST_PORT:-8001}"
LOGS=.run/cluster
FAME=.venv/bin/fame

if ! [[ "$COUNT" =~ ^[1-9][0-9]?$ ]]; then
    echo "cluster: FAME_CLUSTER_SENTINELS=$COUNT is not a number of sentinels (1-99)" >&2
    exit 2
fi
NATS_SERVER="$(scripts/ensure-nats.sh)"
mkdir -p "$LOGS"

pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "cluster stopped" >&2
}
trap stop INT TERM EXIT

"$NATS_SERVER" -a 127.0.0.1 -p "$NATS_PORT" >"$LOGS/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    grep -q "Server is ready" "$LOGS/nats.log" && break
    sleep 0.1
done
if ! grep -q "Server is ready" "$LOGS/nats.log"; then
    cat "$LOGS/nats.log" >&2
    echo "cluster: nats-server did not start on port $NATS_PORT (see above)" >&2
    exit 1
fi
echo "nats-server on 127.0.0.1:$NATS_PORT" >&2

urls=()
for i in $(seq "$COUNT"); do
    port=$((FIRST_PORT + i - 1))
    FAME_CLUSTER_URL="nats://127.0.0.1:$NATS_PORT" FAME_NODE_ID="sentinel-$i" \
        "$FAME" sentinel --host 127.0.0.1 --port "$port" >"$LOGS/sentinel-$i.log" 2>&1 &
    pids+=($!)
    urls+=("ws://127.0.0.1:$port/fame/v1/attach/ws/downstream")
    echo "sentinel-$i on 127.0.0.1:$port (log $LOGS/sentinel-$i.log)" >&2
done
(IFS=,; echo "FAME_DIRECT_ADMISSION_URL=${urls[*]}")
echo "health: curl http://127.0.0.1:$FIRST_PORT/fame/v1/attach/health; Ctrl-C stops the cluster" >&2
wait -n "${pids[@]}" || true
echo "cluster: a process exited; stopping the others" >&2
