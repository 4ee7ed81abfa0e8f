#!/usr/bin/env bash
# Create (or reuse) .venv-interop: a Python >= 3.12 virtualenv holding the
# Naylence reference SDK, used only as a test peer by tests/interop.
#
# Interpreter search order:
#   1. $FAME_INTEROP_PYTHON
#   2. python3.12 / python3.13 on PATH (only if they actually run; a pyenv
#      shim for a version that is not selected fails)
#   3. ~/.pyenv/versions/3.12*/bin/python3.12, then 3.13*
#
# The venv is reused when its stamp file records the same requirements, so a
# second run returns at once. FAME_INTEROP_VENV overrides the venv path.
# Exit codes: 0 ready, 3 no suitable Python, 4 venv creation or install failed.
set -euo pipefail

REQUIREMENTS=("naylence-agent-sdk==0.4.12" "openai>=1.40")
STAMP_LINE="${REQUIREMENTS[*]}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FAME_INTEROP_VENV:-$ROOT/.venv-interop}"
STAMP="$VENV/.interop-requirements"

is_suitable() {
    # True when "$1" runs and is at least Python 3.12.
    local candidate="$1"
    [ -n "$candidate" ] || return 1
    "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' \
        >/dev/null 2>&1
}

find_python() {
    local candidate
    if [ -n "${FAME_INTEROP_PYTHON:-}" ]; then
        if is_suitable "$FAME_INTEROP_PYTHON"; then
            echo "$FAME_INTEROP_PYTHON"
            return 0
        fi
        echo "interop-venv: FAME_INTEROP_PYTHON='$FAME_INTEROP_PYTHON' is not a" \
            "runnable Python >= 3.12" >&2
        return 1
    fi
    for candidate in python3.12 python3.13; do
        if command -v "$candidate" >/dev/null 2>&1 && is_suitable "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
    for candidate in "$pyenv_root"/versions/3.12*/bin/python3.12 \
        "$pyenv_root"/versions/3.13*/bin/python3.13; do
        if [ -x "$candidate" ] && is_suitable "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

is_current() {
    [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_LINE" ] \
        && is_suitable "$VENV/bin/python"
}

if is_current; then
    echo "interop venv ready (cached): $VENV"
    exit 0
fi

# Serialise concurrent runs (parallel test workers) on one lock per venv path.
if command -v flock >/dev/null 2>&1; then
    LOCK="${TMPDIR:-/tmp}/interop-venv.$(printf '%s' "$VENV" | cksum | cut -d' ' -f1).lock"
    exec 9>"$LOCK"
    if ! flock -w 900 9; then
        echo "interop-venv: timed out waiting for $LOCK" >&2
        exit 4
    fi
    if is_current; then
        echo "interop venv ready (cached): $VENV"
        exit 0
    fi
fi

if ! PYTHON="$(find_python)"; then
    echo "interop-venv: no Python >= 3.12 found (set FAME_INTEROP_PYTHON)" >&2
    exit 3
fi

echo "interop-venv: creating $VENV with $PYTHON ($("$PYTHON" --version 2>&1))"
rm -rf "$VENV"
if ! "$PYTHON" -m venv "$VENV"; then
    echo "interop-venv: could not create a virtualenv with $PYTHON" >&2
    exit 4
fi
if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "${REQUIREMENTS[@]}"; then
    echo "interop-venv: pip install of ${REQUIREMENTS[*]} failed" >&2
    exit 4
fi
printf '%s' "$STAMP_LINE" >"$STAMP"
echo "interop venv ready: $VENV ($("$VENV/bin/python" --version 2>&1))"
