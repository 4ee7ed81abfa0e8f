"""Calls to a chat agent through a user's link, with fabric errors turned into HTTP ones.

Every gateway endpoint is one or two of these calls; nothing is stored in the
gateway. The chat agent's operations used: ``tasks/send`` (start a
conversation), ``get_conversation``, ``end_conversation``,
``list_conversations``, ``run_turn``/``stream_turn`` (a turn of a
conversation) and ``complete``/``stream_complete`` (stateless).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from famefabric.agent import a2a
from famefabric.errors import FabricError, JSONValue
from famefabric.gateway.errors import from_fabric_error
from famefabric.node import Node
from famefabric.node.rpc import Stream
from famefabric.protocol import jsonrpc


class Upstream:
    """The agent at ``address``, called through ``node``.

    Args:
        node: the user's link.
        address: the agent's address.
        timeout: seconds a unary call, or the silence between streamed pieces, may last.
    """

    def __init__(self, node: Node, address: str, *, timeout: float) -> None:
        self.node = node
        self.address = address
        self.timeout = timeout

    async def call(self, method: str, **kwargs: JSONValue) -> JSONValue:
        """Call an operation; return its result.

        Raises:
            GatewayError: the call failed; status and code say how.
        """
        params = jsonrpc.operation_params((), kwargs)
        try:
            return await self.node.call(self.address, method, params, timeout=self.timeout)
        except FabricError as exc:
            raise from_fabric_error(exc, self.address) from exc

    async def start_conversation(self, conversation_id: str, payload: dict[str, Any]) -> None:
        """Start a conversation (A2A ``tasks/send``) with ``system_prompt`` etc. in ``payload``."""
        params = a2a.make_task_params(id=conversation_id, payload=payload)
        try:
            await self.node.call(self.address, "tasks/send", params.to_wire(), timeout=self.timeout)
        except FabricError as exc:
            raise from_fabric_error(exc, self.address) from exc

    async def open_stream(self, method: str, **kwargs: JSONValue) -> PeekedStream:
        """Start a streaming operation and wait for its first piece.

        Failures before the first piece (no agent, unknown conversation, LLM
        refused) raise here, so they can still be answered with an HTTP status.

        Raises:
            GatewayError: the call failed before its first piece.
        """
        params = jsonrpc.operation_params((), kwargs)
        stream = self.node.stream(self.address, method, params, idle_timeout=self.timeout)
        try:
            first = await stream.__anext__()
        except StopAsyncIteration:
            return PeekedStream(stream, None, self.address, ended=True)
        except FabricError as exc:
            await stream.aclose()
            raise from_fabric_error(exc, self.address) from exc
        except BaseException:
            await stream.aclose()
            raise
        return PeekedStream(stream, first, self.address)


class PeekedStream:
    """A started stream whose first piece was already read; iterate it for every piece.

    Close it (``aclose``, or leave its ``async with``) to cancel the call upstream.
    """

    def __init__(
        self, stream: Stream, first: JSONValue, address: str, *, ended: bool = False
    ) -> None:
        self._stream = stream
        self._first = first
        self._address = address
        self._ended = ended

    async def __aenter__(self) -> PeekedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the call; the agent gets a cancel notice if it was still running."""
        await self._stream.aclose()

    async def pieces(self) -> AsyncIterator[str]:
        """Yield the text pieces.

        Raises:
            GatewayError: the call failed after its first piece.
        """
        if self._ended:
            return
        yield str(self._first)
        while True:
            try:
                piece = await self._stream.__anext__()
            except StopAsyncIteration:
                return
            except FabricError as exc:
                raise from_fabric_error(exc, self._address) from exc
            yield str(piece)
