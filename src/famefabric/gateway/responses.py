"""The Responses API: ``POST /v1/responses``, a turn of a conversation or a stateless reply.

With ``conversation`` the input is one user message and the reply is a turn
of the chat agent (``run_turn``/``stream_turn``): the agent keeps the history.
Without it, ``instructions`` plus the input go to the agent's stateless
``complete``/``stream_complete``. ``stream: true`` answers with OpenAI's
server-sent events; a client that closes the stream cancels the turn upstream
(the fabric's cancel notice reaches the agent, which closes its LLM request).

An ``Idempotency-Key`` header becomes the turn's id: the chat agent answers a
turn id it has already answered from its store, so a retried POST is answered
once (same text, same response id), without asking the model again.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from famefabric.gateway.context import Gateway, User
from famefabric.gateway.conversations import gateway_of
from famefabric.gateway.errors import GatewayError, invalid
from famefabric.gateway.shapes import (
    ResponseCreate,
    new_response_id,
    one_user_message,
    output_message,
    response_object,
)
from famefabric.gateway.upstream import PeekedStream
from famefabric.protocol.ids import new_id

router = APIRouter(prefix="/v1", tags=["responses"])

_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _turn_id(user: User, key: str | None) -> tuple[str, str]:
    """The turn id and the response id: derived from the Idempotency-Key when there is one."""
    if key is None:
        return new_id(), new_response_id()
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise invalid(
            "Idempotency-Key must be 1 to 200 printable ASCII characters without spaces",
            param="Idempotency-Key",
        )
    digest = hashlib.sha256(f"{user.key}\0{key}".encode()).hexdigest()
    return f"idem-{digest[:32]}", f"resp_{digest[32:64]}"


def _stateless_messages(body: ResponseCreate) -> list[Any]:
    messages: list[Any] = []
    if body.instructions:
        messages.append({"role": "system", "content": body.instructions})
    messages.extend(body.messages())
    return messages


@router.post("/responses", summary="Create a response", response_model=None)
async def create_response(
    request: Request,
    body: ResponseCreate,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> dict[str, Any] | StreamingResponse:
    """Answer ``input`` with the agent named by ``model`` (default the chat agent)."""
    gateway = gateway_of(request)
    user = await gateway.user(request)
    address = gateway.resolve_model(body.model)
    conversation_id = body.conversation_id()
    if conversation_id is not None and body.instructions is not None:
        raise invalid(
            "instructions set the system prompt of a new conversation; this conversation has "
            "one already (create a conversation with a system item to choose it)",
            param="instructions",
        )
    turn_id, response_id = _turn_id(user, idempotency_key)
    user_message = one_user_message(body) if conversation_id is not None else ""
    if body.stream:
        return await _start_stream(
            gateway, user, body, address, conversation_id, user_message, turn_id, response_id
        )
    created = int(time.time())
    async with gateway.upstream(user, address) as upstream:
        if conversation_id is not None:
            async with gateway.turn(user, conversation_id, turn_id):
                reply = await upstream.call(
                    "run_turn",
                    conversation_id=conversation_id,
                    user_message=user_message,
                    turn_id=turn_id,
                )
        else:
            reply = await upstream.call("complete", messages=_stateless_messages(body))
    message = output_message(f"msg_{response_id[5:]}", str(reply))
    return response_object(
        response_id,
        address,
        status="completed",
        output=[message],
        conversation_id=conversation_id,
        instructions=body.instructions,
        created=created,
    )


async def _start_stream(
    gateway: Gateway,
    user: User,
    body: ResponseCreate,
    address: str,
    conversation_id: str | None,
    user_message: str,
    turn_id: str,
    response_id: str,
) -> StreamingResponse:
    stack = AsyncExitStack()
    try:
        await stack.enter_async_context(gateway.stream_slot(user))
        upstream = await stack.enter_async_context(gateway.upstream(user, address))
        if conversation_id is not None:
            await stack.enter_async_context(gateway.turn(user, conversation_id, turn_id))
            stream = await upstream.open_stream(
                "stream_turn",
                conversation_id=conversation_id,
                user_message=user_message,
                turn_id=turn_id,
            )
        else:
            stream = await upstream.open_stream(
                "stream_complete", messages=_stateless_messages(body)
            )
        stack.push_async_callback(stream.aclose)
    except BaseException:
        await stack.aclose()
        raise
    base = response_object(
        response_id,
        address,
        status="in_progress",
        output=[],
        conversation_id=conversation_id,
        instructions=body.instructions,
        created=int(time.time()),
    )
    return StreamingResponse(
        _events(stack, stream, base), media_type="text/event-stream", headers=SSE_HEADERS
    )


class _Sequence:
    def __init__(self) -> None:
        self.number = 0

    def event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.number, **fields}
        self.number += 1
        return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _events(
    stack: AsyncExitStack, stream: PeekedStream, base: dict[str, Any]
) -> AsyncIterator[bytes]:
    """OpenAI's Responses stream events for one reply; the stack is closed at the end."""
    seq = _Sequence()
    message_id = f"msg_{base['id'][5:]}"
    where = {"item_id": message_id, "output_index": 0, "content_index": 0}
    pieces: list[str] = []
    try:
        yield seq.event("response.created", response=base)
        yield seq.event("response.in_progress", response=base)
        yield seq.event(
            "response.output_item.added",
            output_index=0,
            item=output_message(message_id, "", status="in_progress"),
        )
        empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield seq.event("response.content_part.added", **where, part=empty_part)
        try:
            async for piece in stream.pieces():
                pieces.append(piece)
                yield seq.event("response.output_text.delta", **where, delta=piece, logprobs=[])
        except GatewayError as exc:
            error = exc.body()["error"]
            yield seq.event(
                "error", code=exc.code, message=exc.message, param=exc.param, error=error
            )
            failed = {
                **base,
                "status": "failed",
                "error": {"code": exc.code, "message": exc.message},
            }
            yield seq.event("response.failed", response=failed)
            return
        text = "".join(pieces)
        item = output_message(message_id, text)
        yield seq.event("response.output_text.done", **where, text=text, logprobs=[])
        yield seq.event("response.content_part.done", **where, part=item["content"][0])
        yield seq.event("response.output_item.done", output_index=0, item=item)
        yield seq.event(
            "response.completed", response={**base, "status": "completed", "output": [item]}
        )
    finally:
        await stack.aclose()
