"""How a :class:`~famefabric.node.node.Node` is put together from its parts.

The parts refer to each other (the sender needs the supervisor's link, the
supervisor hands arrivals to the inbound router, which answers through the
sender), so they are built in one place, in dependency order, and handed
back together. The node gives the few things they need from it as
:class:`Hooks`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from famefabric.envelope_log import EnvelopePrinter
from famefabric.errors import ConfigurationError
from famefabric.node.binder import Binder
from famefabric.node.inbound import Inbound
from famefabric.node.link import Connector
from famefabric.node.outbox import Outbox
from famefabric.node.registrar import Registrar
from famefabric.node.rpc import RpcClient
from famefabric.node.sender import Sender
from famefabric.node.state import LinkStateMachine
from famefabric.node.supervisor import NodeEvent, Supervisor, Timing

DEFAULT_ADMISSION_URL = "ws://127.0.0.1:8000/fame/v1/attach/ws/downstream"
_SYSTEM_ID = re.compile(r"[A-Za-z0-9._-]+")


def admission_bases(
    admission_url: str | None, *, default_connect: bool, system_id: str | None
) -> list[str]:
    """Split and check a node's admission URL (several sentinels are comma-separated).

    Raises:
        ConfigurationError: a URL is not a WebSocket URL (with the default
            connector), or ``system_id`` is not a valid path segment.
    """
    base = DEFAULT_ADMISSION_URL if admission_url is None else admission_url
    bases = [part.strip() for part in base.split(",") if part.strip()] or [base]
    for each in bases:
        _check_target(each, default_connect=default_connect, system_id=system_id)
    return bases


def _check_target(admission_url: str, *, default_connect: bool, system_id: str | None) -> None:
    if default_connect and not admission_url.startswith(("ws://", "wss://")):
        raise ConfigurationError(
            f"admission_url={admission_url!r} is not a WebSocket URL: expected ws://HOST:PORT/..."
        )
    if system_id is not None and not _SYSTEM_ID.fullmatch(system_id):
        raise ConfigurationError(
            f"system_id={system_id!r} is not a valid path segment: use letters, digits, '.', '_', '-'"
        )


@dataclass(frozen=True, slots=True)
class Hooks:
    """What the parts call back into the node for."""

    spawn: Callable[[Coroutine[Any, Any, None]], None]
    """Run a coroutine in the node's task group (dropped when it is not running)."""
    emit: Callable[[NodeEvent], None]
    """Tell the node's listeners about a connection event."""
    can_renew_token: Callable[[], bool]
    """Whether the next attempt would present a fresh token."""
    reply_address: Callable[[], str | None]
    """The node's current RPC reply address."""
    keeps_trying: Callable[[], bool]
    """Whether the node still reconnects (for binds waiting on a connection)."""


@dataclass(frozen=True, slots=True)
class Parts:
    """The working parts of one node."""

    sender: Sender
    rpc: RpcClient
    binder: Binder
    outbox: Outbox
    inbound: Inbound
    supervisor: Supervisor
    registrar: Registrar


def assemble(
    *,
    system_id: str,
    machine: LinkStateMachine,
    url: str,
    fallback_urls: Sequence[str],
    connect: Connector,
    accepted_logicals: Sequence[str],
    timing: Timing,
    printer: EnvelopePrinter | None,
    max_queued: int,
    default_timeout: float,
    hooks: Hooks,
) -> Parts:
    """Build a node's parts and connect them to each other."""
    sender = Sender(system_id=system_id, machine=machine, spawn=hooks.spawn)
    rpc = RpcClient(
        submit=sender.submit,
        send_notice=sender.send_notice,
        default_timeout=default_timeout,
    )
    binder = Binder(system_id=system_id)
    bindings = binder.bindings
    outbox = Outbox(max_queued=max_queued, inbox_id=rpc.inbox_id)
    inbound = Inbound(
        system_id=system_id,
        bindings=bindings,
        rpc=rpc,
        binder=binder,
        spawn=hooks.spawn,
        send=sender.send_quietly,
    )
    supervisor = Supervisor(
        url=url,
        system_id=system_id,
        connect=connect,
        accepted_logicals=accepted_logicals,
        timing=timing,
        printer=printer,
        inbound=inbound,
        binder=binder,
        outbox=outbox,
        rpc=rpc,
        emit=hooks.emit,
        spawn=hooks.spawn,
        machine=machine,
        can_renew_token=hooks.can_renew_token,
        fallback_urls=fallback_urls,
    )
    registrar = Registrar(
        system_id=system_id,
        binder=binder,
        current_link=lambda: supervisor.link,
        keeps_trying=hooks.keeps_trying,
    )
    sender.connect(
        supervisor=supervisor,
        inbound=inbound,
        outbox=outbox,
        reply_address=hooks.reply_address,
    )
    return Parts(
        sender=sender,
        rpc=rpc,
        binder=binder,
        outbox=outbox,
        inbound=inbound,
        supervisor=supervisor,
        registrar=registrar,
    )
