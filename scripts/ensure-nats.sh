#!/usr/bin/env bash
# Print the path of a nats-server binary, for the tests that run a real NATS server.
#
# Search order:
#   1. $FAME_NATS_SERVER, when it names an executable
#   2. nats-server on PATH, then /usr/sbin/nats-server (Debian's place for it)
#   3. install Debian's nats-server package with apt-get (root only), then 2
#
# Only the path goes to standard output; apt-get's output is shown (on
# standard error) only when the installation fails. Exit codes: 0 printed, 3 missing and not installable here (not root or
# no apt-get), 4 the installation failed.
set -euo pipefail

find_binary() {
    if [ -n "${FAME_NATS_SERVER:-}" ] && [ -x "${FAME_NATS_SERVER}" ]; then
        printf '%s\n' "${FAME_NATS_SERVER}"
        return 0
    fi
    if command -v nats-server 2>/dev/null; then
        return 0
    fi
    for candidate in /usr/sbin/nats-server /usr/bin/nats-server; do
        if [ -x "$candidate" ]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

if find_binary; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-nats: nats-server is not installed and apt-get is not available;" \
        "install NATS and put nats-server on PATH or set FAME_NATS_SERVER" >&2
    exit 3
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-nats: nats-server is not installed and installing it needs root;" \
        "run 'sudo apt-get install nats-server' or set FAME_NATS_SERVER" >&2
    exit 3
fi

export DEBIAN_FRONTEND=noninteractive
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
install_package() {
    apt-get install -y -qq --no-install-recommends nats-server >>"$LOG" 2>&1
}

echo "ensure-nats: installing Debian's nats-server package" >&2
# The package lists may be missing or stale on a fresh machine: refresh them
# only when the first attempt fails, so that a warm machine installs offline.
if ! install_package; then
    apt-get update -qq >>"$LOG" 2>&1 || true
    if ! install_package; then
        cat "$LOG" >&2
        echo "ensure-nats: 'apt-get install nats-server' failed; see the messages above" >&2
        exit 4
    fi
fi

if find_binary; then
    exit 0
fi
echo "ensure-nats: nats-server was installed but no binary was found on PATH" >&2
exit 4
