"""Fixtures of the cluster tests: a real nats-server (``scripts/ensure-nats.sh``)."""

from __future__ import annotations

import os
import subprocess

import pytest
from support.procs import REPO_ROOT

ENSURE_NATS = REPO_ROOT / "scripts" / "ensure-nats.sh"


def _nats_is_required() -> bool:
    ci = os.environ.get("CI", "").strip().lower()
    return ci not in ("", "0", "false", "no") or os.environ.get("FAME_REQUIRE_NATS") == "1"


@pytest.fixture(scope="session")
def nats_binary() -> str:
    """The nats-server executable; skips (fails under CI) when it cannot be installed."""
    result = subprocess.run(
        [os.fspath(ENSURE_NATS)], capture_output=True, text=True, timeout=600, check=False
    )
    path = result.stdout.strip()
    if result.returncode != 0 or not path:
        message = f"nats-server unavailable: {result.stderr.strip()[-500:]}"
        if _nats_is_required():
            pytest.fail(message)
        pytest.skip(message)
    return path
