"""Chat Completions (stateless): ``POST /v1/chat/completions`` and ``GET /v1/models``.

The whole message list goes to the agent's ``complete``/``stream_complete``
operations; nothing is kept. This is what Open WebUI, LibreChat and other
OpenAI-compatible tools speak.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from famefabric.gateway.conversations import gateway_of
from famefabric.gateway.errors import GatewayError
from famefabric.gateway.responses import SSE_HEADERS
from famefabric.gateway.shapes import ChatCompletionCreate
from famefabric.gateway.upstream import PeekedStream
from famefabric.protocol.ids import new_id

router = APIRouter(prefix="/v1", tags=["chat completions"])


def _messages(body: ChatCompletionCreate) -> list[Any]:
    return [{"role": m.role, "content": m.text()} for m in body.messages]


@router.get("/models", summary="List the models (agent addresses)")
async def list_models(request: Request) -> dict[str, Any]:
    """The agent addresses the gateway advertises, plus its aliases."""
    gateway = gateway_of(request)
    await gateway.user(request)
    names = [*gateway.settings.models, *sorted(gateway.settings.aliases)]
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "famefabric"} for name in names
    ]
    return {"object": "list", "data": data}


@router.post("/chat/completions", summary="Create a chat completion", response_model=None)
async def create_chat_completion(
    request: Request, body: ChatCompletionCreate
) -> dict[str, Any] | StreamingResponse:
    """Answer the message list with the agent named by ``model``."""
    gateway = gateway_of(request)
    user = await gateway.user(request)
    address = gateway.resolve_model(body.model)
    completion_id, created = f"chatcmpl-{new_id()}", int(time.time())
    if not body.stream:
        async with gateway.upstream(user, address) as upstream:
            reply = await upstream.call("complete", messages=_messages(body))
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": address,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": str(reply), "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": None,
        }
    stack = AsyncExitStack()
    try:
        await stack.enter_async_context(gateway.stream_slot(user))
        upstream = await stack.enter_async_context(gateway.upstream(user, address))
        stream = await upstream.open_stream("stream_complete", messages=_messages(body))
        stack.push_async_callback(stream.aclose)
    except BaseException:
        await stack.aclose()
        raise
    return StreamingResponse(
        _chunks(stack, stream, completion_id, created, address),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def _chunks(
    stack: AsyncExitStack, stream: PeekedStream, completion_id: str, created: int, model: str
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()

    try:
        yield chunk({"role": "assistant", "content": ""})
        try:
            async for piece in stream.pieces():
                yield chunk({"content": piece})
        except GatewayError as exc:
            yield f"data: {json.dumps(exc.body(), ensure_ascii=False)}\n\n".encode()
            return
        yield chunk({}, "stop")
        yield b"data: [DONE]\n\n"
    finally:
        await stack.aclose()
