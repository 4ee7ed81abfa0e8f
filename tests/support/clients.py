"""Client scenario runs: our client or the Naylence reference's, as processes.

A :class:`ClientJob` names a scenario of ``tests/interop/agents/our_client.py``
or ``tests/interop/peers/naylence_client.py``; :func:`run_clients` runs
several at a time and returns their JSON reports as :class:`ClientRun`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from support.pool import ProcessPool
from support.procs import (
    FAME,
    INTEROP_PYTHON,
    INTEROP_VENV_SCRIPT,
    OUR_AGENTS_DIR,
    OUR_PYTHON,
    PEERS_DIR,
    REPO_ROOT,
    ManagedProcess,
)
from support.sentinels import Sentinel


@dataclass(frozen=True)
class ClientJob:
    """One client scenario run: who runs it, against which sentinel and address.

    Attributes:
        client: ``ours`` or ``naylence``.
        scenario: the scenario name (see the client scripts).
        sentinel: the sentinel to attach to.
        address: the target address (None: the scenario's default).
        timeout: seconds per call.
        extra_args: further command-line arguments.
        env: extra environment variables.
    """

    client: str
    scenario: str
    sentinel: Sentinel
    address: str | None = None
    timeout: float = 10.0
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        """The command that runs this job."""
        if self.client == "ours":
            script = [os.fspath(OUR_PYTHON), os.fspath(OUR_AGENTS_DIR / "our_client.py")]
        elif self.client == "naylence":
            script = [os.fspath(INTEROP_PYTHON), os.fspath(PEERS_DIR / "naylence_client.py")]
        else:
            raise ValueError(f"unknown client {self.client!r}: expected 'ours' or 'naylence'")
        args = [self.scenario]
        if self.address:
            args.append(self.address)
        return [*script, *args, "--timeout", f"{self.timeout:g}", *self.extra_args]


@dataclass
class ClientRun:
    """A finished client run: its report, its process and how long it took."""

    job: ClientJob
    process: ManagedProcess
    report: dict[str, Any]
    wall: float

    def step(self, name: str) -> dict[str, Any]:
        """The step called ``name`` in the report.

        Raises:
            ProcessFailure: the report has no such step.
        """
        for step in self.report.get("steps", []):
            if step.get("step") == name:
                return dict(step)
        raise self.process.fail(
            f"{self.job.client} client report for {self.job.scenario!r} has no step {name!r}: "
            f"{json.dumps(self.report)[:2000]}"
        )

    @property
    def steps(self) -> list[dict[str, Any]]:
        """All steps of the report."""
        return list(self.report.get("steps", []))


def parse_report(process: ManagedProcess) -> dict[str, Any]:
    """The JSON report on the last line of a finished client's stdout.

    Raises:
        ProcessFailure: no report, or a report of a scenario that could not run.
    """
    lines = [line for line in process.stdout().splitlines() if line.strip()]
    if not lines:
        raise process.fail(f"{process.name} printed no report")
    try:
        report = json.loads(lines[-1])
    except ValueError:
        raise process.fail(f"{process.name} printed no JSON report on its last line") from None
    if not isinstance(report, dict) or "steps" not in report:
        raise process.fail(f"{process.name} printed an unexpected report: {lines[-1][:500]}")
    if report.get("error"):
        raise process.fail(f"{process.name} could not run its scenario: {report['error']}")
    return report


async def run_client(pool: ProcessPool, job: ClientJob, *, within: float = 90.0) -> ClientRun:
    """Run one client scenario to its end and return its report.

    Raises:
        ProcessFailure: it did not finish in time, exited with an error or
            printed no report.
    """
    name = f"{job.client}-client-{job.scenario}"
    process = pool.spawn(name, job.argv(), env=job.sentinel.node_env(dict(job.env)))
    status = await process.wait_exit(within)
    wall = time.monotonic() - process.started_at
    if status != 0:
        raise process.fail(f"{process.name} exited with status {status}")
    return ClientRun(job, process, parse_report(process), wall)


async def run_clients(
    pool: ProcessPool,
    jobs: Sequence[ClientJob],
    *,
    parallel: int = 6,
    within: float = 90.0,
) -> list[ClientRun]:
    """Run client scenarios, up to ``parallel`` at a time; return their runs in job order.

    Raises:
        ProcessFailure: a client did not finish in time, exited with an error
            or printed no report.
    """
    slots = asyncio.Semaphore(parallel)

    async def one(job: ClientJob) -> ClientRun:
        async with slots:
            return await run_client(pool, job, within=within)

    return list(await asyncio.gather(*(one(job) for job in jobs)))


def check_interop_venv(*, timeout: float = 900.0) -> tuple[int, str]:
    """Run ``scripts/interop-venv.sh``; return its exit status and its output.

    Exit status 3 means no Python >= 3.12 was found (see the script). It runs
    once per session, from a synchronous session fixture.
    """
    try:
        done = subprocess.run(
            ["bash", os.fspath(INTEROP_VENV_SCRIPT)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return 4, f"{INTEROP_VENV_SCRIPT} did not finish within {timeout:g} s"
    return done.returncode, (done.stdout + done.stderr).strip()


def fame_chat(
    env: Mapping[str, str], *args: str, questions: str
) -> subprocess.CompletedProcess[str]:
    """Run ``fame chat`` with ``questions`` piped in; its output captured as text (30 s at most)."""
    return subprocess.run(
        [FAME, "chat", *args],
        input=questions,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
