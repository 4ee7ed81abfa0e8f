"""Fixtures shared by the whole test suite.

Each block below belongs to one area of the tests; add new fixtures in a
block of their own.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from support.clients import check_interop_venv
from support.pool import ProcessPool
from support.procs import INTEROP_VENV

if TYPE_CHECKING:
    from famefabric.testing.openai_server import OpenAIStubServer

# ---------------------------------------------------------------------------
# Real processes: end-to-end (tests/e2e) and interop (tests/interop) fixtures.
#
# The harness lives in tests/support/ (tests/support/processes.py is its index). Processes log to files
# under the test's tmp_path and are stopped (SIGTERM, then SIGKILL after
# 5 s) at teardown. The interop tests need the Naylence reference in
# .venv-interop (Python >= 3.12): when scripts/interop-venv.sh finds no such
# Python they are skipped, unless FAME_REQUIRE_INTEROP=1 (set by CI) makes
# that a failure.
# ---------------------------------------------------------------------------

NO_PYTHON_312 = 3


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "interop: runs the Naylence reference peers (needs .venv-interop)"
    )
    config.addinivalue_line("markers", "e2e: runs our sentinel and nodes as real processes")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def is_interop_required() -> bool:
    """Tell whether a missing interop peer must fail the interop tests rather than skip them."""
    return os.environ.get("FAME_REQUIRE_INTEROP", "").strip() == "1"


@pytest.fixture(scope="session")
def interop_venv() -> Path:
    """The interop virtualenv, created (or reused) by ``scripts/interop-venv.sh``.

    Skips the requesting test when no Python >= 3.12 exists (exit status 3),
    unless ``FAME_REQUIRE_INTEROP=1``; any other failure fails it.
    """
    status, output = check_interop_venv()
    if status == NO_PYTHON_312:
        message = f"interop peers unavailable: {output}"
        if is_interop_required():
            pytest.fail(f"{message} (FAME_REQUIRE_INTEROP=1)")
        pytest.skip(message)
    if status != 0:
        pytest.fail(f"scripts/interop-venv.sh failed with status {status}:\n{output}")
    return INTEROP_VENV


@pytest_asyncio.fixture
async def processes(tmp_path: Path) -> AsyncIterator[ProcessPool]:
    """A pool for the test's own processes, all stopped at teardown; logs in ``tmp_path``."""
    pool = ProcessPool(tmp_path / "processes")
    try:
        yield pool
    finally:
        await pool.stop_all()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_processes(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ProcessPool]:
    """A pool shared by a test module's processes (those no test kills).

    Modules that use it run their tests in the module's event loop
    (``pytestmark = pytest.mark.asyncio(loop_scope="module")``).
    """
    pool = ProcessPool(tmp_path_factory.mktemp("module-processes"))
    try:
        yield pool
    finally:
        await pool.stop_all()


@pytest.fixture(scope="session")
def openai_stub() -> Iterator[OpenAIStubServer]:
    """An OpenAI-compatible stub server on 127.0.0.1 (echo replies ``echo(N): <last user msg>``)."""
    # Imported here so that a broken famefabric import fails only the tests that need it.
    from famefabric.testing.openai_server import OpenAIStubServer

    with OpenAIStubServer() as server:
        yield server


# ---------------------------------------------------------------------------
# End of the real-process fixtures.
# ---------------------------------------------------------------------------
