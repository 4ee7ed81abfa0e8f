"""Calls waiting for their replies, keyed by correlation id (PROTOCOL.md §8.2).

A request is sent with ``corrId`` equal to its JSON-RPC id, and every reply
and NACK comes back with that ``corrId``. :class:`PendingCalls` maps it to a
:class:`PendingCall`, which is either a future (a unary call) or a small
bounded buffer (a stream). An entry leaves the table as soon as it is
answered, failed, timed out or cancelled, so the table only ever holds calls
somebody is still waiting for.

Each entry remembers on which connection (``generation``) its request went
out; when that connection drops, exactly those entries fail, while requests
still queued for the next connection keep waiting.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from famefabric.errors import JSONValue, NoRoute, RemoteError, StreamOverflow
from famefabric.protocol.jsonrpc import INTERNAL_ERROR

STREAM_BUFFER = 1024
"""Items a stream may hold for a slow consumer before it is failed (bounded memory)."""


def remote_error(error: dict[str, Any]) -> RemoteError:
    """Build a :class:`RemoteError` from a JSON-RPC ``error`` member."""
    code = error.get("code")
    message = error.get("message")
    return RemoteError(
        code if isinstance(code, int) and not isinstance(code, bool) else INTERNAL_ERROR,
        message if isinstance(message, str) else str(message),
        error.get("data"),
    )


class PendingCall:
    """One request waiting for its reply (or, for a stream, its replies).

    Args:
        call_id: the JSON-RPC id, also the request's ``corrId``.
        envelope_id: the request envelope's ``id``, which NACKs carry as ``refId``.
        address: where the request goes.
        method: the JSON-RPC method, for error messages.
        streaming: True for a stream (many replies then an end marker).
    """

    __slots__ = (
        "_ended",
        "_failure",
        "_items",
        "_waiter",
        "address",
        "call_id",
        "done",
        "envelope_id",
        "future",
        "generation",
        "method",
        "sent",
        "streaming",
    )

    def __init__(
        self, call_id: str, envelope_id: str, address: str, method: str, *, streaming: bool
    ) -> None:
        self.call_id = call_id
        self.envelope_id = envelope_id
        self.address = address
        self.method = method
        self.streaming = streaming
        self.generation: int | None = None  # connection the request went out on
        self.sent = False
        self.done = False
        self.future: asyncio.Future[JSONValue] | None = (
            None if streaming else asyncio.get_running_loop().create_future()
        )
        self._items: deque[JSONValue] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self._ended = False

    def accept(self, payload: JSONValue) -> bool:
        """Take one JSON-RPC response; True when the call is complete.

        A unary call completes with its first response. A stream buffers
        results until the end marker (neither ``result`` nor ``error``, or a
        null ``result``, §8.3) or an error response. A payload that is not a
        JSON-RPC response completes a unary call with the raw value.
        """
        if not isinstance(payload, dict) or "method" in payload:
            if self.streaming:
                return False
            return self._finish(payload, None)
        error = payload.get("error")
        if error is not None:
            if not isinstance(error, dict):
                error = {"code": INTERNAL_ERROR, "message": str(error)}
            return self._finish(None, remote_error(error))
        result = payload.get("result")
        if not self.streaming or result is None:
            return self._finish(result, None)
        if len(self._items) >= STREAM_BUFFER:
            return self._finish(None, StreamOverflow(self.address, self.method, STREAM_BUFFER))
        self._items.append(result)
        self._wake()
        return False

    def reject(self, code: str | None, reason: str | None) -> None:
        """Fail the call because the sentinel NACKed its request (§7.6)."""
        self.fail(NoRoute(self.address, code=code or "NO_ROUTE", reason=reason or ""))

    def fail(self, error: BaseException) -> None:
        """Complete the call with ``error`` (no effect once complete)."""
        self._finish(None, error)

    def _finish(self, result: JSONValue, error: BaseException | None) -> bool:
        if self.done:
            return True
        self.done = True
        if self.future is not None:
            if not self.future.done():
                if error is None:
                    self.future.set_result(result)
                else:
                    self.future.set_exception(error)
        else:
            self._failure = error
            self._ended = True
            self._wake()
        return True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_item(self) -> tuple[bool, JSONValue]:
        """Wait for the next stream item: ``(True, item)``, or ``(False, None)`` at the end.

        Bound the wait with :func:`asyncio.timeout`.

        Raises:
            RemoteError: the agent answered with an error.
            NoRoute: the request was NACKed.
            ConnectionClosed: the link dropped while the stream was open.
        """
        while True:
            if self._items:
                return True, self._items.popleft()
            if self._failure is not None:
                raise self._failure
            if self._ended:
                return False, None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


class PendingCalls:
    """The table of calls waiting for replies, keyed by ``corrId``."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[str, PendingCall] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[PendingCall]:
        return iter(list(self._calls.values()))

    def add(self, call: PendingCall) -> None:
        """Register a call before its request is sent."""
        self._calls[call.call_id] = call

    def discard(self, call: PendingCall) -> None:
        """Forget a call (idempotent); it will ignore any late reply."""
        call.done = True
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]

    def on_reply(self, corr_id: str | None, payload: JSONValue) -> PendingCall | None:
        """Route a reply ``Data`` to its call; None when nobody waits for it."""
        call = self._calls.get(corr_id) if corr_id is not None else None
        if call is not None and call.accept(payload):
            del self._calls[call.call_id]
        return call

    def on_nack(
        self, corr_id: str | None, ref_id: str | None, code: str | None, reason: str | None
    ) -> PendingCall | None:
        """Route a NACK to its call, matched by ``corrId`` and ``refId`` (§8.2)."""
        call = self._calls.get(corr_id) if corr_id is not None else None
        if call is None or ref_id != call.envelope_id:
            return None
        del self._calls[call.call_id]
        call.reject(code, reason)
        return call

    def fail_sent_on(
        self, generation: int, error: Callable[[PendingCall], BaseException]
    ) -> list[PendingCall]:
        """Fail every call whose request went out on connection ``generation``."""
        failed = [call for call in self._calls.values() if call.generation == generation]
        for call in failed:
            del self._calls[call.call_id]
            call.fail(error(call))
        return failed

    def fail_all(self, error: Callable[[PendingCall], BaseException]) -> None:
        """Fail every call (the node is closing)."""
        calls, self._calls = list(self._calls.values()), {}
        for call in calls:
            call.fail(error(call))
