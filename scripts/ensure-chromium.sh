#!/usr/bin/env bash
# Print the path of a Chromium binary, for the browser tests of the web chat page
# (tests/gateway/test_web_*.py drive it with Playwright; Playwright never downloads
# a browser of its own here).
#
# Search order:
#   1. $FAME_CHROMIUM, when it names an executable
#   2. /usr/bin/chromium, then chromium on PATH
#   3. install Debian's chromium package with apt-get (root only), then 2
#
# Only the path goes to standard output; apt-get's output is shown (on standard
# error) only when the installation fails. Exit codes: 0 printed, 3 missing and not
# installable here (not root or no apt-get), 4 the installation failed.
set -euo pipefail

find_binary() {
    if [ -n "${FAME_CHROMIUM:-}" ] && [ -x "${FAME_CHROMIUM}" ]; then
        printf '%s\n' "${FAME_CHROMIUM}"
        return 0
    fi
    if [ -x /usr/bin/chromium ]; then
        printf '%s\n' /usr/bin/chromium
        return 0
    fi
    if command -v chromium 2>/dev/null; then
        return 0
    fi
    return 1
}

if find_binary; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: chromium is not installed and apt-get is not available;" \
        "install Chromium and set FAME_CHROMIUM to its path" >&2
    exit 3
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-chromium: chromium is not installed and installing it needs root;" \
        "run 'sudo apt-get install chromium' or set FAME_CHROMIUM" >&2
    exit 3
fi

export DEBIAN_FRONTEND=noninteractive
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
install_package() {
    # Another apt-get may hold the dpkg lock for a while: wait for it, bounded.
    apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 \
        chromium fonts-dejavu-core >>"$LOG" 2>&1
}

echo "ensure-chromium: installing Debian's chromium package" >&2
# The package lists may be missing or stale on a fresh machine: refresh them
# only when the first attempt fails, so that a warm machine installs offline.
if ! install_package; then
    apt-get update -qq -o DPkg::Lock::Timeout=300 >>"$LOG" 2>&1 || true
    if ! install_package; then
        cat "$LOG" >&2
        echo "ensure-chromium: 'apt-get install chromium' failed; see the messages above" >&2
        exit 4
    fi
fi

if find_binary; then
    exit 0
fi
echo "ensure-chromium: chromium was installed but no binary was found" >&2
exit 4
