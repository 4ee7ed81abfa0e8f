"""Real processes for end-to-end and interop tests: an index of the harness.

Every helper starts genuine operating-system processes on 127.0.0.1 and
waits for them with deadlines (coroutines: await them from async tests).
The parts live in modules of their own:

* :mod:`support.procs` — :class:`ManagedProcess` (one command, its logs,
  waits for a line, a condition or the exit; stop, kill -9, restart),
  :class:`ProcessFailure`, :func:`base_env`, :func:`wait_for`, and the paths
  of our and the reference's executables;
* :mod:`support.sentinels` — :class:`OurSentinel` (binds port 0 and reports
  its port), :class:`NaylenceSentinel`, :func:`read_health`;
* :mod:`support.pool` — :class:`ProcessPool`, the processes of one fixture;
* :mod:`support.agents` — :class:`AgentSpec`, our and the reference's agents,
  :func:`start_agents`;
* :mod:`support.clients` — :class:`ClientJob`, :func:`run_clients`.
"""

from __future__ import annotations

from support.agents import (
    AgentSpec,
    naylence_chat_agent,
    naylence_echo_agent,
    our_chat_agent,
    our_echo_agent,
    start_agents,
    wait_agent_ready,
)
from support.clients import ClientJob, ClientRun, check_interop_venv, run_client, run_clients
from support.pool import ProcessPool
from support.procs import (
    FAME,
    INTEROP_PYTHON,
    INTEROP_VENV,
    OUR_PYTHON,
    READY_TIMEOUT,
    REPO_ROOT,
    ManagedProcess,
    ProcessFailure,
    base_env,
    wait_for,
)
from support.sentinels import (
    ATTACH_PATH,
    HEALTH_PATH,
    NaylenceSentinel,
    OurSentinel,
    Sentinel,
    admission_url,
    read_health,
)

from famefabric.testing import free_port

__all__ = [
    "ATTACH_PATH",
    "FAME",
    "HEALTH_PATH",
    "INTEROP_PYTHON",
    "INTEROP_VENV",
    "OUR_PYTHON",
    "READY_TIMEOUT",
    "REPO_ROOT",
    "AgentSpec",
    "ClientJob",
    "ClientRun",
    "ManagedProcess",
    "NaylenceSentinel",
    "OurSentinel",
    "ProcessFailure",
    "ProcessPool",
    "Sentinel",
    "admission_url",
    "base_env",
    "check_interop_venv",
    "free_port",
    "naylence_chat_agent",
    "naylence_echo_agent",
    "our_chat_agent",
    "our_echo_agent",
    "read_health",
    "run_client",
    "run_clients",
    "start_agents",
    "wait_agent_ready",
    "wait_for",
]
