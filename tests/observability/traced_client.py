"""A chat client process with tracing on, for tests/observability/test_tracing.py.

Usage: ``python traced_client.py`` with ``FAME_DIRECT_ADMISSION_URL`` and the
``OTEL_*`` variables set. It starts a conversation, takes one unary and one
streamed turn, abandons a second stream after its first piece, and calls an
address nobody serves. It prints ``TRACE <name> <trace id>`` for each, then
exits, which exports its spans.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import aclosing

from famefabric import FameFabric
from famefabric.errors import NoRoute
from famefabric.observability import tracing

CHAT = "chat@fame.fabric"


async def main() -> None:
    assert tracing.setup("famefabric-chat"), "tracing is not configured"
    async with FameFabric.create() as fabric:
        node = fabric.node
        start = {
            "id": "tracedConv1",
            "message": {"role": "user", "parts": [{"type": "data", "data": {}}]},
        }
        with tracing.span("start") as span:
            await node.call(CHAT, "tasks/send", start)
            assert span is not None
            print("TRACE start", format(span.get_span_context().trace_id, "032x"), flush=True)
        with tracing.span("unary turn") as span:
            reply = await node.call(
                CHAT, "run_turn", {"conversation_id": "tracedConv1", "user_message": "hello"}
            )
            assert span is not None
            print("REPLY", reply, flush=True)
            print("TRACE unary", format(span.get_span_context().trace_id, "032x"), flush=True)
        with tracing.span("streamed turn") as span:
            params = {"conversation_id": "tracedConv1", "user_message": "stream this please"}
            pieces = [piece async for piece in node.stream(CHAT, "stream_turn", params)]
            assert span is not None and pieces
            print("TRACE stream", format(span.get_span_context().trace_id, "032x"), flush=True)
        with tracing.span("cancelled turn") as span:
            params = {"conversation_id": "tracedConv1", "user_message": "one two three four five"}
            async with aclosing(node.stream(CHAT, "stream_turn", params).__aiter__()) as items:
                async for _ in items:
                    break  # abandon the stream after its first piece
            assert span is not None
            print("TRACE cancel", format(span.get_span_context().trace_id, "032x"), flush=True)
        with tracing.span("refused call") as span:
            try:
                await node.call("nobody@fame.fabric", "anything", {})
            except NoRoute:
                pass
            assert span is not None
            print("TRACE nack", format(span.get_span_context().trace_id, "032x"), flush=True)
    tracing.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
