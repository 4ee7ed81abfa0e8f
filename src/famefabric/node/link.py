"""One attached connection: open it, attach, and send stamped envelopes on it.

:func:`open_link` dials the admission URL, sends ``NodeAttach`` and waits for
the matching ``NodeAttachAck`` (PROTOCOL.md §5.1). It returns a :class:`Link`,
which pairs the transport with its :class:`~famefabric.node.session.Session`
and writes envelopes the way the wire wants them: default flow, ``seqId`` /
``flowFlags`` stamps, ``sid``, and never more than 256 KiB (§2.4, §9).

Sending is not queued: the node stamps and encodes with :meth:`Link.encode`
and hands the bytes to the transport without yielding in between; both
transports write in call order, so envelopes leave in the order they were sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from famefabric.envelope_log import EnvelopePrinter
from famefabric.errors import (
    AttachRefused,
    ConnectionClosed,
    LocalProtocolError,
    RemoteProtocolError,
)
from famefabric.node.session import Attachment, Session
from famefabric.protocol.codec import envelope_from_dict, envelope_to_dict, parse_object
from famefabric.protocol.frames import MAX_ENVELOPE_BYTES
from famefabric.transport.base import Transport

log = logging.getLogger(__name__)

Connector = Callable[[str], Awaitable[Transport]]
CLOSE_TIMEOUT = 2.0
"""How long a close handshake may take before the connection is abandoned."""


class Link:
    """An attached connection to the sentinel.

    Args:
        transport: the open transport.
        session: its state, already attached.
        generation: a number that grows with every connection of the node.
        printer: prints every envelope sent and received, when set.
    """

    __slots__ = ("generation", "lost", "printer", "session", "transport")

    def __init__(
        self,
        transport: Transport,
        session: Session,
        generation: int,
        printer: EnvelopePrinter | None,
    ) -> None:
        self.transport = transport
        self.session = session
        self.generation = generation
        self.printer = printer
        self.lost: asyncio.Future[ConnectionClosed] = asyncio.get_running_loop().create_future()

    @property
    def attachment(self) -> Attachment:
        """What the sentinel assigned on this connection."""
        attachment = self.session.attachment
        assert attachment is not None
        return attachment

    @property
    def description(self) -> str:
        """The far end, for logs."""
        return self.transport.description

    @property
    def is_lost(self) -> bool:
        """Tell whether this connection was given up."""
        return self.lost.done()

    def encode(self, wire: dict[str, Any]) -> bytes:
        """Stamp a wire object for this connection and serialize it.

        Raises:
            LocalProtocolError: the envelope is larger than 262 144 bytes, or
                its content cannot be serialized as JSON.
        """
        if "sid" not in wire:
            wire["sid"] = self.session.sid
        self.session.stamp(wire)
        try:
            data = orjson.dumps(wire)
        except TypeError as exc:
            raise LocalProtocolError(
                f"cannot send envelope to {wire.get('to')!r}: its content is not JSON ({exc})"
            ) from None
        if len(data) > MAX_ENVELOPE_BYTES:
            raise oversize_error(wire, len(data))
        return data

    async def send(self, wire: dict[str, Any]) -> None:
        """Stamp, encode and send one envelope (see :meth:`encode`).

        Raises:
            LocalProtocolError: the envelope is too large or not JSON; nothing was sent.
            ConnectionClosed: the connection is closed.
        """
        await self.send_encoded(wire, self.encode(wire))

    async def send_encoded(self, wire: dict[str, Any], data: bytes) -> None:
        """Send ``data``, the result of :meth:`encode` on ``wire`` (printed when enabled)."""
        if self.printer is not None:
            self.printer.show("sent", wire, peer=self.description)
        await self.transport.send(data)

    async def send_unstamped(self, wire: dict[str, Any]) -> None:
        """Send a wire object exactly as given (a ``CreditUpdate``, §4.9)."""
        if self.printer is not None:
            self.printer.show("sent", wire, peer=self.description)
        await self.transport.send(orjson.dumps(wire))

    def give_up(self, error: ConnectionClosed) -> bool:
        """Mark the connection lost; True the first time only."""
        if self.lost.done():
            return False
        self.lost.set_result(error)
        return True


def oversize_error(wire: dict[str, Any], size: int) -> LocalProtocolError:
    """Describe an envelope that is too large to send (§2.4)."""
    frame = wire.get("frame")
    kind = frame.get("type") if isinstance(frame, dict) else None
    target = wire.get("to")
    where = f" to {target!r}" if target else ""
    return LocalProtocolError(
        f"cannot send {kind or 'an'} envelope{where}: it is {size} bytes, "
        f"more than the {MAX_ENVELOPE_BYTES} bytes a peer accepts"
    )


async def close_quietly(transport: Transport, code: int = 1000, reason: str = "") -> None:
    """Close a transport, waiting at most :data:`CLOSE_TIMEOUT` for the handshake."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await transport.close(code, reason)
    except (ConnectionClosed, TimeoutError, OSError) as exc:
        log.debug("closing %s: %s", transport.description, exc)


async def open_link(
    *,
    connect: Connector,
    url: str,
    system_id: str,
    accepted_logicals: Sequence[str],
    generation: int,
    attach_timeout: float,
    printer: EnvelopePrinter | None,
) -> Link:
    """Connect to ``url`` and attach (PROTOCOL.md §5.1).

    Anything but the attach answer (and ``CreditUpdate``) received before the
    ack is discarded, as the reference node does.

    Raises:
        AttachRefused: the sentinel refused the handshake (``status`` set) or
            answered ``ok: false``.
        ConnectionClosed: the sentinel cannot be reached, refused the
            handshake, closed the connection or did not answer within
            ``attach_timeout`` seconds; the message names the URL.
    """
    try:
        transport = await connect(url)
    except ConnectionClosed:
        raise
    except (OSError, TimeoutError) as exc:
        raise ConnectionClosed(f"cannot connect to {url}: {exc or type(exc).__name__}") from exc
    loop = asyncio.get_running_loop()
    session = Session(system_id=system_id, accepted_logicals=accepted_logicals, now=loop.time())
    try:
        wire = envelope_to_dict(session.attach_envelope())
        session.stamp(wire)
        if printer is not None:
            printer.show("sent", wire, peer=transport.description)
        await transport.send(orjson.dumps(wire))
        async with asyncio.timeout(attach_timeout):
            while not session.is_attached:
                await _read_attach_answer(transport, session, printer, loop.time)
    except TimeoutError:
        await close_quietly(transport, 1000, "attach timeout")
        raise ConnectionClosed(
            f"cannot attach to {url}: no NodeAttachAck within {attach_timeout:g} s"
        ) from None
    except AttachRefused as exc:
        await close_quietly(transport, 1000, "attach refused")
        raise AttachRefused(
            f"cannot attach to {url}: the sentinel refused: {exc.reason}", reason=exc.reason
        ) from None
    except RemoteProtocolError as exc:
        await close_quietly(transport, 1000, "bad attach answer")
        raise ConnectionClosed(f"cannot attach to {url}: {exc}") from exc
    except ConnectionClosed as exc:
        raise ConnectionClosed(
            f"cannot attach to {url}: the connection closed during the attach ({exc})",
            code=exc.code,
            reason=exc.reason,
        ) from exc
    except BaseException:
        await close_quietly(transport, 1000, "normal closure")
        raise
    return Link(transport, session, generation, printer)


async def _read_attach_answer(
    transport: Transport,
    session: Session,
    printer: EnvelopePrinter | None,
    clock: Callable[[], float],
) -> None:
    raw = await transport.receive()
    try:
        obj = parse_object(raw)
    except RemoteProtocolError as exc:
        session.touch(now=clock())
        log.warning("dropping a malformed message from %s: %s", transport.description, exc)
        return
    if printer is not None:
        printer.show("received", obj, peer=transport.description)
    if obj["frame"]["type"] == "CreditUpdate":
        return
    credit = session.on_receive(obj.get("flowId"), now=clock())
    if credit is not None:
        if printer is not None:
            printer.show("sent", credit, peer=transport.description)
        await transport.send(orjson.dumps(credit))
    try:
        envelope = envelope_from_dict(obj)
    except RemoteProtocolError as exc:
        log.warning("dropping an invalid envelope from %s: %s", transport.description, exc)
        return
    if session.is_attach_answer(envelope):
        session.accept_attach(envelope, now=clock())
    else:
        log.debug("ignoring %s received before the attach completed", envelope.frame.type)
