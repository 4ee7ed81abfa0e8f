"""The asyncio side of one child connection: read, feed the session, write, close.

Three tasks per connection, all short:

- the reader takes each message from the transport, feeds it to the
  :class:`~famefabric.sentinel.session.ChildSession` and carries out the
  actions it returns (:func:`apply`): bytes go to the destination's
  outbound queue, which never blocks the reader; it lets the other
  connections run after every :data:`FAIR_SHARE` messages, because a
  transport hands over what it has already buffered without suspending
  (a flooder's 256 KB read is a thousand small envelopes);
- the writer drains this connection's outbound queue, writing everything
  queued in one go; a write that does not finish within the write deadline
  makes the connection a slow consumer; once a close is requested it writes
  what is left (the answer to a refused attach, say) and closes the link;
- the ticker calls :meth:`ChildSession.tick` when the idle timeout or the
  token expiry is due.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from famefabric.errors import ConnectionClosed
from famefabric.observability import metrics
from famefabric.protocol.ids import new_id
from famefabric.sentinel.actions import Action, Close, Send
from famefabric.sentinel.router import Router
from famefabric.sentinel.session import ChildSession, SessionState
from famefabric.transport.base import Transport

log = logging.getLogger("famefabric.sentinel")

CLOSE_TIMEOUT = 2.0
"""Seconds a closing handshake may take before the link is dropped."""
SLOW_CLOSE_TIMEOUT = 0.5
"""The same for a slow consumer, whose socket is full anyway."""
FAIR_SHARE = 4
"""Messages one connection's reader handles before yielding to the event loop."""

_count_out = metrics.ENVELOPES_OUT.inc
_bytes_out = metrics.BYTES_OUT.inc
_bytes_in = metrics.BYTES_IN.inc
_forward_seconds = metrics.FORWARD_SECONDS.observe


def apply(actions: Sequence[Action], now: float) -> None:
    """Carry out a session's actions; never blocks."""
    for action in actions:
        if type(action) is Send:
            _count_out()
            _bytes_out(len(action.data))
            if not action.target.outbound.offer(action.data, now=now) and log.isEnabledFor(
                logging.DEBUG
            ):
                log.debug(
                    "node %s: dropped %d bytes, queue full", action.target.node_id, len(action.data)
                )
        else:
            assert isinstance(action, Close)
            request_close(action.target, action.code, action.reason)


def request_close(session: ChildSession, code: int, reason: str) -> None:
    """Ask ``session``'s writer to close its link (after writing what is queued)."""
    if session.state is not SessionState.CLOSED:
        session.closing(code, reason)
    wake = session.outbound.wake
    if wake is not None:
        wake()


async def run(
    session: ChildSession,
    transport: Transport,
    *,
    idle_timeout: float | None,
) -> None:
    """Serve ``session`` over ``transport`` until the link closes, then detach it."""
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    session.outbound.wake = _flusher(session, transport, ready, loop)
    if session.close_request is not None:
        ready.set()
    try:
        async with asyncio.TaskGroup() as tasks:
            writer = tasks.create_task(_write(session, transport, ready))
            ticker = tasks.create_task(_tick(session, idle_timeout, ready))
            try:
                await _read(session, transport, loop)
            finally:
                ticker.cancel()
                if session.close_request is None:
                    writer.cancel()
    finally:
        session.outbound.wake = None
        apply(session.link_closed(loop.time()), loop.time())


def _flusher(
    session: ChildSession,
    transport: Transport,
    ready: asyncio.Event,
    loop: asyncio.AbstractEventLoop,
) -> Callable[[], None]:
    """Return the queue's ``wake``: flush at the end of this loop turn, else wake the writer.

    Everything queued during one turn goes out in one write; the writer task
    is woken only when the socket is backed up, the writer is busy or a close
    is due.
    """
    queue = session.outbound
    send_now = getattr(transport, "send_now", None)
    scheduled = False

    def flush() -> None:
        nonlocal scheduled
        scheduled = False
        if queue and not queue.busy and callable(send_now):
            batch = queue.take_all()
            if send_now(batch):
                if session.close_request is None:
                    return
            else:
                queue.put_back(batch)
        ready.set()

    def wake() -> None:
        nonlocal scheduled
        if not scheduled:
            scheduled = True
            loop.call_soon(flush)

    return wake


async def _read(
    session: ChildSession, transport: Transport, loop: asyncio.AbstractEventLoop
) -> None:
    receive = transport.receive
    feed = session.receive
    clock = time.perf_counter
    share = FAIR_SHARE
    while True:
        share -= 1
        if not share:
            share = FAIR_SHARE
            await asyncio.sleep(0)  # let the other connections' readers and writers run
        try:
            message = await receive()
        except ConnectionClosed:
            return
        now = loop.time()
        started = clock()
        _bytes_in(len(message))
        try:
            actions = feed(message, now)
        except Exception as exc:
            # A bug, not bad input: the first gets a traceback, the rest a bounded warning.
            error_id = new_id()[:8]
            if not session.warnings:
                log.exception(
                    "node %s: error %s while handling an envelope", session.node_id, error_id
                )
            session.warn("dropped an envelope after error %s: %s", error_id, type(exc).__name__)
            continue
        if actions:
            apply(actions, now)
        _forward_seconds(clock() - started)


async def _write(session: ChildSession, transport: Transport, ready: asyncio.Event) -> None:
    router: Router = session.router
    queue = session.outbound
    deadline = router.limits.write_deadline
    loop = asyncio.get_running_loop()
    while True:
        await ready.wait()
        ready.clear()
        while queue:
            batch = queue.take_all()
            queue.busy = True
            try:
                async with asyncio.timeout(deadline):
                    await _send_all(transport, batch)
            except TimeoutError:
                now = loop.time()
                out: list[Action] = []
                router.slow_consumer(session, out, now)
                apply(out, now)
                break
            except ConnectionClosed:
                queue.close()
                return
            finally:
                queue.busy = False
        if session.close_request is not None:
            await _close(session, transport)
            return


async def _send_all(transport: Transport, batch: list[bytes]) -> None:
    send_many = getattr(transport, "send_many", None)
    if send_many is not None and len(batch) > 1:
        await send_many(batch)
        return
    for data in batch:
        await transport.send(data)


async def _close(session: ChildSession, transport: Transport) -> None:
    assert session.close_request is not None
    code, reason = session.close_request
    slow = session.outbound.closed
    try:
        async with asyncio.timeout(SLOW_CLOSE_TIMEOUT if slow else CLOSE_TIMEOUT):
            await transport.close(code, reason)
    except TimeoutError:
        _abort(transport)
    except Exception:  # the close is best effort; the reader sees the outcome
        log.debug("node %s: error while closing", session.node_id, exc_info=True)


def _abort(transport: Transport) -> None:
    """Drop a link whose closing handshake did not finish (its peer does not read)."""
    abort = getattr(transport, "abort", None)
    if callable(abort):
        abort()


async def _tick(session: ChildSession, idle_timeout: float | None, ready: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while session.close_request is None:
        deadline = session.next_deadline(idle_timeout)
        if deadline is None:
            return
        delay = deadline - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # a timer, not a synchronization: re-checked below
            continue
        actions = session.tick(loop.time(), idle_timeout)
        if actions:
            apply(actions, loop.time())
        else:
            await asyncio.sleep(0.001)  # the clock has not quite reached the deadline
