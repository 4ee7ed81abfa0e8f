"""``FameFabric``: the process's attachment to the fabric, and serving agents on it.

``async with FameFabric.create() as fabric:`` attaches one node to the
sentinel at ``FAME_DIRECT_ADMISSION_URL`` and makes it the current fabric,
which proxies built without a fabric (``Agent.remote_by_address``) and
:func:`aserve` use. ``FameFabric.create(in_process=True)`` runs a sentinel
inside the process instead and attaches over in-memory transports: agents and
clients of one program can then talk with no sentinel process and no sockets.

This is where the parts are composed: the agent SDK knows nothing of this
module; it only reads the default connection installed here.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
from contextlib import AsyncExitStack
from dataclasses import replace
from types import TracebackType
from typing import Self

from famefabric.agent.base import BaseAgent
from famefabric.agent.limits import HandlerLimits
from famefabric.agent.proxy import (
    Connection,
    default_connection,
    reset_default_connection,
    set_default_connection,
)
from famefabric.agent.server import AgentServer
from famefabric.errors import FabricError
from famefabric.node import Node
from famefabric.observability import tracing
from famefabric.observability.endpoint import serve_metrics_from_env
from famefabric.security import TokenProvider, token_provider_from_env
from famefabric.security.tls import client_context_from_env
from famefabric.sentinel import Sentinel
from famefabric.settings import FabricSettings, check_ws_urls
from famefabric.transport import Transport

log = logging.getLogger(__name__)

IN_PROCESS_URL = "memory://in-process/fame/v1/attach/ws/downstream"


def current_fabric() -> FameFabric | None:
    """Return the fabric of the innermost ``async with FameFabric.create()``, if any."""
    connection = default_connection()
    return connection if isinstance(connection, FameFabric) else None


class FameFabric:
    """A node attached to a sentinel (or to an in-process one), and the agents it serves.

    Build it with :meth:`create`; use it as an async context manager.
    """

    def __init__(
        self,
        *,
        settings: FabricSettings,
        in_process: bool = False,
        system_id: str | None = None,
        accepted_logicals: tuple[str, ...] = ("*",),
        token: TokenProvider | None = None,
    ) -> None:
        self._settings = settings
        self._token_provider = token
        self._in_process = in_process
        self._system_id = system_id or settings.node_id
        self._accepted_logicals = accepted_logicals
        self._stack = AsyncExitStack()
        self._node: Node | None = None
        self._sentinel: Sentinel | None = None
        self._servers: dict[str, AgentServer] = {}
        self._token: contextvars.Token[Connection | None] | None = None

    @classmethod
    def create(
        cls,
        *,
        admission_url: str | None = None,
        in_process: bool = False,
        settings: FabricSettings | None = None,
        system_id: str | None = None,
        show_envelopes: bool | None = None,
        call_timeout: float | None = None,
        token: TokenProvider | None = None,
    ) -> FameFabric:
        """Configure a fabric; enter it with ``async with`` to attach.

        Args:
            admission_url: the sentinel's attach URL; default ``FAME_DIRECT_ADMISSION_URL``.
            in_process: run a sentinel in this process instead of attaching to one.
            settings: settings to use instead of reading the environment.
            system_id: this node's id; default ``FAME_NODE_ID`` or a random one.
            show_envelopes: print every envelope; default ``FAME_SHOW_ENVELOPES``.
            call_timeout: default seconds a call waits; default ``FAME_CALL_TIMEOUT`` (30).
            token: the node's admission token source; default ``FAME_TOKEN``,
                ``FAME_TOKEN_FILE`` or ``FAME_ADMISSION_TOKEN_URL`` (none: anonymous).

        Raises:
            ConfigurationError: an environment variable has an invalid value.
        """
        base = settings or FabricSettings.from_env()
        changes: dict[str, object] = {}
        if admission_url is not None:
            changes["admission_url"] = check_ws_urls("admission_url", admission_url)
        if show_envelopes is not None:
            changes["show_envelopes"] = show_envelopes
        if call_timeout is not None:
            changes["call_timeout"] = call_timeout
        if changes:
            base = replace(base, **changes)  # type: ignore[arg-type]
        if token is None and not in_process:
            token = token_provider_from_env()
        return cls(settings=base, in_process=in_process, system_id=system_id, token=token)

    @property
    def settings(self) -> FabricSettings:
        """The settings this fabric runs with."""
        return self._settings

    @property
    def node(self) -> Node:
        """The attached node.

        Raises:
            FabricError: the fabric has not been entered yet.
        """
        if self._node is None:
            raise FabricError(
                "the fabric is not running: use 'async with FameFabric.create() as fabric:'"
            )
        return self._node

    async def __aenter__(self) -> Self:
        tracing.setup("famefabric")  # on only if OTEL_* says so; a no-op when already on
        try:
            if self._in_process:
                self._sentinel = await self._stack.enter_async_context(
                    Sentinel(listen=False, show_envelopes=self._settings.show_envelopes)
                )
            node = Node(
                admission_url=IN_PROCESS_URL if self._in_process else self._settings.admission_url,
                connect=self._connect_in_process if self._in_process else None,
                system_id=self._system_id,
                accepted_logicals=self._accepted_logicals,
                max_initial_attempts=self._settings.max_initial_attempts,
                default_timeout=self._settings.call_timeout,
                show_envelopes=self._settings.show_envelopes,
                token=self._token_provider,
                tls=None if self._in_process else client_context_from_env(),
            )
            self._node = await self._stack.enter_async_context(node)
        except BaseException:
            await self._stack.aclose()
            raise
        self._token = set_default_connection(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            try:
                reset_default_connection(self._token)
            except ValueError:
                set_default_connection(None)  # exited from another context
            self._token = None
        await self._stack.aclose()
        self._node = None

    async def _connect_in_process(self, url: str) -> Transport:
        assert self._sentinel is not None
        return self._sentinel.connect_in_memory(url.rstrip("/").rsplit("/", 1)[-1])

    async def serve(
        self, agent: BaseAgent, address: str, *, limits: HandlerLimits | None = None
    ) -> AgentServer:
        """Bind ``address`` and answer its requests with ``agent``.

        Args:
            agent: the agent whose operations answer.
            address: the address to serve, e.g. ``"echo@fame.fabric"``.
            limits: handlers run at once and requests queued; by default
                ``FAME_AGENT_MAX_CONCURRENCY`` (64) and ``FAME_AGENT_MAX_QUEUED`` (256).

        Raises:
            FabricError: the address is already served here, or the bind was refused.
            ConfigurationError: a limit's environment variable is invalid.
        """
        if address in self._servers:
            raise FabricError(f"address {address!r} is already served by this fabric")
        server = AgentServer(agent, self.node, address, limits=limits)
        await self.node.bind(address, server.handle)
        self._servers[address] = server
        return server

    @property
    def addresses(self) -> tuple[str, ...]:
        """The addresses this fabric serves."""
        return tuple(self._servers)


async def aserve(
    agent: BaseAgent,
    address: str,
    *,
    fabric: FameFabric | None = None,
    stop: asyncio.Event | None = None,
    limits: HandlerLimits | None = None,
) -> None:
    """Serve ``agent`` at ``address`` until cancelled, ``stop`` is set, or SIGINT/SIGTERM.

    Args:
        agent: the agent whose operations answer.
        address: the logical address to serve, e.g. ``"echo@fame.fabric"``.
        fabric: the fabric to serve on; by default the current one, or a new
            one configured from the environment.
        stop: an event that ends serving when set.
        limits: handlers run at once and requests queued (see :meth:`FameFabric.serve`).
    """
    fabric = fabric or current_fabric()
    if fabric is None:
        async with FameFabric.create() as created:
            await aserve(agent, address, fabric=created, stop=stop, limits=limits)
        return
    await fabric.serve(agent, address, limits=limits)
    log.info("%s serving %s", agent.name, address)
    async with serve_metrics_from_env():
        await _wait_for_stop(stop)


def serve(agent: BaseAgent, address: str) -> None:
    """Attach, serve ``agent`` at ``address`` until SIGINT/SIGTERM: ``asyncio.run(aserve(...))``."""
    asyncio.run(aserve(agent, address))


async def _wait_for_stop(stop: asyncio.Event | None) -> None:
    loop = asyncio.get_running_loop()
    event = stop or asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, event.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or no signal support
    try:
        await event.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
