"""JSON-RPC calls and streams over the node (PROTOCOL.md §8, §10).

A request is a ``Data`` envelope with ``rtype`` 2 (one reply) or 4 (a
stream), ``corrId`` equal to the JSON-RPC id, and ``replyTo`` the node's RPC
inbox ``__rpc__<id>@<assignedPath>``. The node fills ``replyTo`` when the
request actually goes out, so a request queued during an outage carries the
path of the connection that finally sends it (§5.7, C-22).

When a caller stops waiting (timeout, cancellation, an abandoned stream) the
agent gets a cancel notice: a ``DeliveryAck{ok: false, code: "CANCELLED"}``
addressed to the agent, ``corrId`` = the call id, ``refId`` = the request's
envelope id. An agent treats a NACK whose ``corrId`` is a running request's
id as "stop" (§11.2).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from types import TracebackType
from typing import Any

from famefabric.errors import (
    ConnectionClosed,
    JSONValue,
    LocalProtocolError,
    NoRoute,
    OperationTimeout,
    ProtocolError,
    RemoteError,
    StreamOverflow,
)
from famefabric.node import call_spans, wire
from famefabric.node.correlation import PendingCall, PendingCalls
from famefabric.observability import tracing
from famefabric.protocol.address import parse_address
from famefabric.protocol.frames import RTYPE_REPLY, RTYPE_STREAM
from famefabric.protocol.ids import new_id

Submit = Callable[[dict[str, Any], PendingCall], Awaitable[None]]
SendNotice = Callable[[PendingCall, dict[str, Any]], None]


def link_lost_error(call: PendingCall) -> ConnectionClosed:
    """The error of a call whose request went out on a connection that dropped."""
    doing = "streaming" if call.streaming else "calling"
    where = "from" if call.streaming else "on"
    return ConnectionClosed(
        f"connection to sentinel lost while {doing} {call.method} {where} {call.address}; "
        "the call may or may not have run"
    )


def _check_address(address: str) -> None:
    try:
        parse_address(address)
    except ProtocolError as exc:
        raise LocalProtocolError(f"cannot call {address!r}: {exc}") from None


class RpcClient:
    """Sends requests and matches their replies.

    Args:
        submit: sends (or queues) a request wire object for a call; fills
            ``replyTo``, ``sid`` and the flow fields.
        send_notice: sends a cancel notice for a call in the background.
        default_timeout: seconds a call (or a stream, per item) waits by default.
    """

    def __init__(self, *, submit: Submit, send_notice: SendNotice, default_timeout: float) -> None:
        self.submit = submit
        self._send_notice = send_notice
        self.default_timeout = default_timeout
        self.pending = PendingCalls()
        self.inbox_id = new_id()  # one reply inbox per node process (§6.3)

    def request(
        self,
        call: PendingCall,
        params: JSONValue,
        *,
        rtype: int,
        timeout: float | None,
        meta: dict[str, JSONValue] | None,
    ) -> dict[str, Any]:
        """Return the wire object of the request for ``call`` (without ``replyTo``)."""
        return wire.request(
            envelope_id=call.envelope_id,
            call_id=call.call_id,
            to=call.address,
            method=call.method,
            params=params,
            rtype=rtype,
            timeout=timeout,
            meta=meta,
        )

    async def call(
        self,
        to: str,
        method: str,
        params: JSONValue,
        *,
        timeout: float | None = None,
        meta: dict[str, JSONValue] | None = None,
    ) -> JSONValue:
        """Call ``method`` at ``to`` and return its result (see :meth:`Node.call`)."""
        _check_address(to)
        limit = self.default_timeout if timeout is None else timeout
        call = PendingCall(new_id(), new_id(), to, method, streaming=False)
        request = self.request(call, params, rtype=RTYPE_REPLY, timeout=limit, meta=meta)
        if tracing.ACTIVE:
            return await self._traced_call(call, request, limit)
        return await self._call(call, request, limit)

    async def _traced_call(
        self, call: PendingCall, request: dict[str, Any], limit: float
    ) -> JSONValue:
        span = call_spans.start(call.method, call.address, request, streaming=False)
        try:
            result = await self._call(call, request, limit)
        except BaseException as exc:
            call_spans.end(span, exc)
            raise
        call_spans.end(span)
        return result

    async def _call(self, call: PendingCall, request: dict[str, Any], limit: float) -> JSONValue:
        assert call.future is not None
        self.pending.add(call)
        scope = asyncio.timeout(limit)
        try:
            async with scope:
                await self.submit(request, call)
                return await call.future
        except TimeoutError:
            if not scope.expired():
                raise
            self.abandon(call)
            raise OperationTimeout(
                f"no reply from {call.address!r} to {call.method} within {limit:g} s"
            ) from None
        except asyncio.CancelledError:
            self.abandon(call)
            raise
        finally:
            self.pending.discard(call)

    def stream(
        self,
        to: str,
        method: str,
        params: JSONValue,
        *,
        idle_timeout: float | None = None,
        timeout: float | None = None,
        meta: dict[str, JSONValue] | None = None,
    ) -> Stream:
        """Return a :class:`Stream` of the results of ``method`` at ``to``."""
        _check_address(to)
        return Stream(
            self,
            to,
            method,
            params,
            idle_timeout=self.default_timeout if idle_timeout is None else idle_timeout,
            timeout=timeout,
            meta=meta,
        )

    def abandon(self, call: PendingCall, *, still_running: bool = False) -> None:
        """Forget a call its caller stopped waiting for, and tell the agent (if it got it).

        Args:
            call: the call.
            still_running: send the notice even though the call completed
                locally (a stream that overflowed while the agent produces).
        """
        was_open = still_running or not call.done
        self.pending.discard(call)
        if was_open and call.sent:
            notice = wire.cancel_notice(
                to=call.address, call_id=call.call_id, envelope_id=call.envelope_id
            )
            self._send_notice(call, notice)

    def on_reply(self, corr_id: str | None, payload: JSONValue) -> PendingCall | None:
        """Take a reply ``Data`` addressed to the RPC inbox; the call it matched, if any."""
        return self.pending.on_reply(corr_id, payload)

    def on_nack(
        self, corr_id: str | None, ref_id: str | None, code: str | None, reason: str | None
    ) -> PendingCall | None:
        """Take a NACK addressed to the RPC inbox (matched by ``corrId`` and ``refId``)."""
        return self.pending.on_nack(corr_id, ref_id, code, reason)

    def fail_sent_on(self, generation: int) -> int:
        """Fail the calls whose requests went out on a connection that dropped."""
        return len(self.pending.fail_sent_on(generation, link_lost_error))

    def fail_all(self, reason: str) -> None:
        """Fail every call: the node is closing."""
        self.pending.fail_all(
            lambda call: ConnectionClosed(f"{reason} while calling {call.method} on {call.address}")
        )


class Stream:
    """The results of a streaming call, as an async iterator.

    The request goes out on the first ``__anext__``. Iteration ends at the
    stream's end marker; an error reply raises :class:`RemoteError`, a NACK
    :class:`NoRoute`, a consumer too slow :class:`StreamOverflow`, silence for
    ``idle_timeout`` seconds (or passing the overall ``timeout``)
    :class:`OperationTimeout`. Leaving early frees the call and sends the
    agent a cancel notice: close the stream with ``aclose()``,
    ``async with stream:`` or :func:`contextlib.aclosing`. ``async for``
    iterates an async generator over the stream, so a ``break`` without any
    of those is still cleaned up, by the event loop's finalizer of async
    generators.
    """

    def __init__(
        self,
        client: RpcClient,
        to: str,
        method: str,
        params: JSONValue,
        *,
        idle_timeout: float,
        timeout: float | None,
        meta: dict[str, JSONValue] | None,
    ) -> None:
        self._client = client
        self._to = to
        self._method = method
        self._params = params
        self._idle_timeout = idle_timeout
        self._timeout = timeout
        self._meta = meta
        self._call: PendingCall | None = None
        self._deadline: float | None = None
        self._finished = False
        self._span: Any = None
        self._seen_item = False

    def __aiter__(self) -> AsyncGenerator[JSONValue, None]:
        return self._items()

    async def _items(self) -> AsyncGenerator[JSONValue, None]:
        try:
            while True:
                try:
                    item = await self.__anext__()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            self._abandon()
            if self._span is not None:
                self._end_span(asyncio.CancelledError())

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _start(self) -> PendingCall:
        call = PendingCall(new_id(), new_id(), self._to, self._method, streaming=True)
        request = self._client.request(
            call, self._params, rtype=RTYPE_STREAM, timeout=self._timeout, meta=self._meta
        )
        if self._timeout is not None:
            self._deadline = asyncio.get_running_loop().time() + self._timeout
        if tracing.ACTIVE:
            self._span = call_spans.start(self._method, self._to, request, streaming=True)
        self._call = call
        self._client.pending.add(call)
        try:
            await self._client.submit(request, call)
        except BaseException:
            self._abandon()  # a notice only if the request went out before this
            raise
        return call

    async def __anext__(self) -> JSONValue:
        if self._span is None and self._call is not None:
            return await self._next()
        try:
            item = await self._next()
        except StopAsyncIteration:
            self._end_span(None)
            raise
        except BaseException as exc:
            self._end_span(exc)
            raise
        if self._span is not None and not self._seen_item:
            self._seen_item = True
            self._span.add_event("first item")
        return item

    def _end_span(self, error: BaseException | None) -> None:
        span, self._span = self._span, None
        if span is not None:
            if error is None:
                span.add_event("end of stream")
            call_spans.end(span, error)

    async def _next(self) -> JSONValue:
        if self._finished:
            raise StopAsyncIteration
        call = self._call or await self._start()
        wait = self._idle_timeout
        overall = False
        if self._deadline is not None:
            remaining = self._deadline - asyncio.get_running_loop().time()
            if remaining <= wait:
                wait, overall = max(remaining, 0.0), True
        scope = asyncio.timeout(wait)
        try:
            async with scope:
                has_item, item = await call.next_item()
        except TimeoutError:
            if not scope.expired():
                raise
            self._abandon()
            if overall:
                message = f"stream from {self._to!r} ({self._method}) did not end within {self._timeout:g} s"
            else:
                message = f"stream from {self._to!r} went quiet for {self._idle_timeout:g} s"
            raise OperationTimeout(message) from None
        except (RemoteError, NoRoute, ConnectionClosed):
            self._finish()
            raise
        except StreamOverflow:
            self._abandon(still_running=True)  # the agent should stop producing
            raise
        except asyncio.CancelledError:
            self._abandon()
            raise
        if not has_item:
            self._finish()
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Stop the stream; the agent gets a cancel notice if it was still running."""
        self._abandon()
        if self._span is not None:
            self._end_span(asyncio.CancelledError())

    def _finish(self) -> None:
        self._finished = True
        if self._call is not None:
            self._client.pending.discard(self._call)

    def _abandon(self, *, still_running: bool = False) -> None:
        if self._finished:
            return
        self._finished = True
        if self._call is not None:
            self._client.abandon(self._call, still_running=still_running)
