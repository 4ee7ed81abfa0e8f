"""Sentinel processes: ours (``fame sentinel``) and the Naylence reference's.

Both know their port, system id and attach URL once started, and are ready
when they take attaches. Ours binds port 0 and reports the port it got in
its start-up line, so there is no race for a port; a restart keeps that port.
The reference sentinel cannot report its port, so it gets a free one
(:func:`famefabric.testing.free_port`) and, when another process took that
port first, one more try on another.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from support.procs import (
    FAME,
    INTEROP_PYTHON,
    PEERS_DIR,
    READY_TIMEOUT,
    ManagedProcess,
    base_env,
    wait_for,
)

from famefabric.testing import free_port

ATTACH_PATH = "/fame/v1/attach/ws/downstream"
HEALTH_PATH = "/fame/v1/attach/health"
LISTENING = re.compile(r"sentinel (\S+) listening on [^\s:]+:(\d+)\s*$", re.MULTILINE)
"""The start-up line of ``fame sentinel`` (stderr), with the port it bound."""


def admission_url(port: int) -> str:
    """Return the ``FAME_DIRECT_ADMISSION_URL`` of a sentinel on 127.0.0.1:``port``."""
    return f"ws://127.0.0.1:{port}{ATTACH_PATH}"


def _get_health(port: int, timeout: float) -> dict[str, Any] | None:
    url = f"http://127.0.0.1:{port}{HEALTH_PATH}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status != 200:
                return None
            body = json.loads(response.read() or b"{}")
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return body if isinstance(body, dict) else {}


async def read_health(port: int, *, timeout: float = 1.0) -> dict[str, Any] | None:
    """GET the attach health endpoint; the JSON body when it answers 200, else None."""
    return await asyncio.to_thread(_get_health, port, timeout)


class _Sentinel:
    """What both sentinels share: a port, an id, an attach URL, a process."""

    kind = "sentinel"

    def __init__(self, *, node_id: str, name: str, log_dir: Path, port: int) -> None:
        self.node_id = node_id
        self.port = port
        self.process = ManagedProcess(
            name, self._argv(), env=base_env(self._env()), log_dir=log_dir
        )

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return {}

    @property
    def admission_url(self) -> str:
        """The ``FAME_DIRECT_ADMISSION_URL`` for nodes of this sentinel."""
        return admission_url(self.port)

    def node_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment variables that attach a node to this sentinel."""
        env = {"FAME_DIRECT_ADMISSION_URL": self.admission_url}
        if extra:
            env.update(extra)
        return env

    def launch(self) -> None:
        """Start the process without waiting (then await :meth:`wait_ready`)."""
        self.process.start()

    async def wait_ready(self, within: float = READY_TIMEOUT) -> None:
        raise NotImplementedError

    async def start(self, *, within: float = READY_TIMEOUT) -> None:
        """Start the sentinel (unless launched) and wait until it takes attaches."""
        if not self.process.is_running:
            self.process.start()
        await self.wait_ready(within)

    async def stop(self) -> None:
        """Stop the sentinel (SIGTERM, then SIGKILL)."""
        await self.process.stop()

    async def restart(self, *, within: float = READY_TIMEOUT) -> None:
        """Stop the sentinel and start it again with the same id on the same port."""
        await self.process.stop()
        self.process.argv = self._argv()
        self.process.env = base_env(self._env())
        self.process.start()
        await self.wait_ready(within)


class OurSentinel(_Sentinel):
    """Our sentinel, ``fame sentinel --host 127.0.0.1 --port 0 --node-id ID``.

    Ready when it logs ``sentinel ID listening on 127.0.0.1:PORT``, which it
    does once it accepts attaches; ``port`` is then the port it bound. Its
    health JSON (:meth:`wait_health`) counts attached ``nodes`` and bound
    ``addresses``.
    """

    kind = "ours"

    def __init__(
        self,
        *,
        node_id: str,
        name: str,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
        scheme: str = "ws",
    ) -> None:
        self._extra_env = dict(env or {})
        self._extra_args = args
        self.scheme = scheme
        super().__init__(node_id=node_id, name=name, log_dir=log_dir, port=0)

    def _env(self) -> dict[str, str]:
        return self._extra_env

    @property
    def admission_url(self) -> str:
        """The attach URL (``wss://localhost`` when the sentinel serves TLS)."""
        if self.scheme == "wss":
            return f"wss://localhost:{self.port}{ATTACH_PATH}"
        return admission_url(self.port)

    def _argv(self) -> list[str]:
        return [
            os.fspath(FAME),
            "sentinel",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--node-id",
            self.node_id,
            *self._extra_args,
        ]

    async def wait_ready(self, within: float = READY_TIMEOUT) -> None:
        """Wait for the start-up line and learn the port from it.

        Raises:
            ProcessFailure: no such line in time, or the process exited.
        """
        found = await self.process.wait_for_line(
            LISTENING, stream="stderr", within=within, what="its 'listening on' line"
        )
        self.port = int(found.group(2))

    async def wait_health(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        what: str,
        within: float = READY_TIMEOUT,
    ) -> dict[str, Any]:
        """Wait until the health JSON satisfies ``predicate``; return it."""
        seen: list[dict[str, Any]] = []
        holds = False

        async def check() -> None:
            nonlocal holds
            body = await read_health(self.port)
            if body is not None:
                seen.append(body)
                holds = predicate(body)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            await check()
            if holds:
                return seen[-1]
            if not self.process.is_running:
                raise self.process.fail(f"{self.process.name} exited while waiting until {what}")
            if loop.time() >= deadline:
                raise self.process.fail(f"timed out after {within:g} s waiting until {what}")
            await asyncio.sleep(0.05)

    def bound_count(self, address: str) -> int:
        """How many binds of ``address`` the current run has logged."""
        return self.process.count(rf"node \S+ bound {re.escape(address)}$")

    async def wait_bound(
        self,
        address: str,
        *,
        count: int = 1,
        within: float = READY_TIMEOUT,
        after: ManagedProcess | None = None,
    ) -> None:
        """Wait until the sentinel has logged ``count`` binds of ``address`` in this run.

        Args:
            address: the logical address.
            count: how many binds (one per binding node) to wait for.
            within: seconds to wait.
            after: an agent process whose logs go into the failure message, and
                whose exit fails the wait at once.
        """

        def holds() -> bool:
            if after is not None and not after.is_running:
                raise after.fail(f"{after.name} exited before binding {address}", self.process)
            return self.bound_count(address) >= count

        if not await wait_for(holds, within=within):
            others = (after,) if after is not None else ()
            raise self.process.fail(
                f"sentinel did not log {count} bind(s) of {address} within {within:g} s", *others
            )


class NaylenceSentinel(_Sentinel):
    """The Naylence reference sentinel (``tests/interop/peers/naylence_sentinel.py``).

    Ready when it prints ``READY sentinel ...``.
    """

    kind = "naylence"

    def __init__(self, *, node_id: str, name: str, log_dir: Path) -> None:
        super().__init__(node_id=node_id, name=name, log_dir=log_dir, port=free_port())

    def _argv(self) -> list[str]:
        return [os.fspath(INTEROP_PYTHON), os.fspath(PEERS_DIR / "naylence_sentinel.py")]

    def _env(self) -> dict[str, str]:
        return {"FAME_LISTENER_PORT": str(self.port), "FAME_NODE_ID": self.node_id}

    async def wait_ready(self, within: float = READY_TIMEOUT) -> None:
        """Wait for the ``READY sentinel`` line."""
        await self.process.wait_for_line(r"^READY sentinel ", within=within, what="its READY line")

    async def start(self, *, within: float = READY_TIMEOUT) -> None:
        """Start it and wait for its READY line; if its port was taken meanwhile, use another."""
        if not self.process.is_running:
            self.process.start()
        try:
            await self.wait_ready(within)
            return
        except AssertionError:
            if self.process.is_running or "in use" not in self.process.stderr():
                await self.process.stop()
                raise
        self.port = free_port()
        await self.restart(within=within)


Sentinel = OurSentinel | NaylenceSentinel
