#!/usr/bin/env bash
# Print the path of a redis-server binary, for the tests that run a real Redis.
#
# Search order:
#   1. $FAME_REDIS_SERVER, when it names an executable
#   2. redis-server on PATH, then /usr/bin/redis-server
#   3. install Debian's redis-server package with apt-get (root only), then 2
#
# Only the path goes to standard output; apt-get's output is shown (on
# standard error) only when the installation fails. Exit codes: 0 printed, 3 missing and not installable here (not root or
# no apt-get), 4 the installation failed.
set -euo pipefail

find_binary() {
    if [ -n "${FAME_REDIS_SERVER:-}" ] && [ -x "${FAME_REDIS_SERVER}" ]; then
        printf '%s\n' "${FAME_REDIS_SERVER}"
        return 0
    fi
    if command -v redis-server 2>/dev/null; then
        return 0
    fi
    if [ -x /usr/bin/redis-server ]; then
        printf '%s\n' /usr/bin/redis-server
        return 0
    fi
    return 1
}

if find_binary; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-redis: redis-server is not installed and apt-get is not available;" \
        "install Redis and put redis-server on PATH or set FAME_REDIS_SERVER" >&2
    exit 3
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-redis: redis-server is not installed and installing it needs root;" \
        "run 'sudo apt-get install redis-server' or set FAME_REDIS_SERVER" >&2
    exit 3
fi

export DEBIAN_FRONTEND=noninteractive
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
install_package() {
    apt-get install -y -qq --no-install-recommends redis-server >>"$LOG" 2>&1
}

echo "ensure-redis: installing Debian's redis-server package" >&2
# The package lists may be missing or stale on a fresh machine: refresh them
# only when the first attempt fails, so that a warm machine installs offline.
if ! install_package; then
    apt-get update -qq >>"$LOG" 2>&1 || true
    if ! install_package; then
        cat "$LOG" >&2
        echo "ensure-redis: 'apt-get install redis-server' failed; see the messages above" >&2
        exit 4
    fi
fi

if find_binary; then
    exit 0
fi
echo "ensure-redis: redis-server was installed but no binary was found on PATH" >&2
exit 4
