"""The Conversations API: ``/v1/conversations``, backed by the chat agent's operations.

A conversation is the chat agent's conversation; the gateway stores nothing.
``GET /v1/conversations`` (the caller's own conversations, most recently
active first, with a title) is an extension of the OpenAI API for the web page.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request

from famefabric.gateway.context import Gateway
from famefabric.gateway.errors import GatewayError, invalid
from famefabric.gateway.shapes import (
    ConversationCreate,
    conversation_object,
    item_index,
    message_item,
    new_conversation_id,
)
from famefabric.gateway.upstream import Upstream

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])

ConversationId = Annotated[str, Path(min_length=1, max_length=200)]
TITLE_CHARS = 80


def gateway_of(request: Request) -> Gateway:
    """The :class:`Gateway` of the app serving ``request``."""
    gateway: Gateway = request.app.state.gateway
    return gateway


async def load(upstream: Upstream, conversation_id: str) -> dict[str, Any]:
    """The chat agent's view of a conversation (``get_conversation``)."""
    state = await upstream.call("get_conversation", conversation_id=conversation_id)
    if not isinstance(state, dict):
        raise GatewayError(
            502, f"{upstream.address} answered get_conversation with {type(state).__name__}"
        )
    return state


def _history(state: dict[str, Any]) -> list[dict[str, str]]:
    history = state.get("history")
    return [m for m in history if isinstance(m, dict)] if isinstance(history, list) else []


def _first_index(state: dict[str, Any], history: list[dict[str, str]]) -> int:
    """Index of the first kept message: the window drops older ones (two per turn)."""
    version = state.get("version")
    turns = version if isinstance(version, int) else 0
    return max(0, 2 * turns - len(history))


def metadata_of(state: dict[str, Any]) -> dict[str, str] | None:
    """The conversation's metadata as the chat agent stored it (``None`` when none)."""
    pairs = state.get("metadata")
    return {str(k): str(v) for k, v in pairs.items()} if isinstance(pairs, dict) else None


def title_of(history: list[dict[str, str]]) -> str:
    """A title: the start of the first user message."""
    for message in history:
        if message.get("role") == "user":
            text = " ".join(str(message.get("content", "")).split())
            return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"
    return ""


@router.post("", summary="Create a conversation")
async def create_conversation(request: Request, body: ConversationCreate) -> dict[str, Any]:
    """Start a conversation with the chat agent, with optional metadata and initial items.

    ``items`` may hold one ``system`` (or ``developer``) message, the system prompt, and
    ``user``/``assistant`` messages that start the history, in order. The chat agent
    stores ``metadata`` and checks the items against its bounds.
    """
    gateway = gateway_of(request)
    user = await gateway.user(request)
    payload: dict[str, Any] = {}
    history: list[dict[str, str]] = []
    for index, item in enumerate(body.items or []):
        role = item.chat_role()
        if role != "system":
            history.append({"role": role, "content": item.text()})
            continue
        if "system_prompt" in payload:
            raise invalid(
                "initial items may hold one system (or developer) message, the system prompt",
                param=f"items[{index}]",
            )
        payload["system_prompt"] = item.text()
    if history:
        payload["history"] = history
    if body.metadata:
        payload["metadata"] = body.metadata
    conversation_id = new_conversation_id()
    async with gateway.upstream(user, gateway.settings.default_model) as upstream:
        await upstream.start_conversation(conversation_id, payload)
    return conversation_object(conversation_id, metadata=body.metadata or None)


@router.get("", summary="List your conversations (extension)")
async def list_conversations(
    request: Request, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> dict[str, Any]:
    """The caller's conversations, most recently active first, each with a title.

    Not part of the OpenAI API: the web page's conversation list.
    """
    gateway = gateway_of(request)
    user = await gateway.user(request)
    async with gateway.upstream(user, gateway.settings.default_model) as upstream:
        ids = await upstream.call("list_conversations", limit=limit)
        if not isinstance(ids, list):
            raise GatewayError(502, "the chat agent answered list_conversations with no list")

        async def describe(conversation_id: str) -> dict[str, Any] | None:
            try:
                state = await load(upstream, conversation_id)
            except GatewayError as exc:
                if exc.status == 404:
                    return None  # ended meanwhile
                raise
            history = _history(state)
            return conversation_object(
                conversation_id,
                title=title_of(history),
                items_count=len(history),
                metadata=metadata_of(state),
            )

        found = await asyncio.gather(*(describe(str(i)) for i in ids))
    data = [entry for entry in found if entry is not None]
    return {"object": "list", "data": data, "has_more": len(ids) >= limit}


@router.get("/{conversation_id}", summary="Retrieve a conversation")
async def get_conversation(request: Request, conversation_id: ConversationId) -> dict[str, Any]:
    """A conversation of the caller's (404 for an unknown or another user's one)."""
    gateway = gateway_of(request)
    user = await gateway.user(request)
    async with gateway.upstream(user, gateway.settings.default_model) as upstream:
        state = await load(upstream, conversation_id)
    history = _history(state)
    return conversation_object(
        conversation_id, title=title_of(history), metadata=metadata_of(state)
    )


@router.delete("/{conversation_id}", summary="Delete a conversation")
async def delete_conversation(request: Request, conversation_id: ConversationId) -> dict[str, Any]:
    """End a conversation: the chat agent drops it."""
    gateway = gateway_of(request)
    user = await gateway.user(request)
    async with gateway.upstream(user, gateway.settings.default_model) as upstream:
        await load(upstream, conversation_id)  # 404 when unknown
        await upstream.call("end_conversation", conversation_id=conversation_id)
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


@router.get("/{conversation_id}/items", summary="List a conversation's items")
async def list_items(
    request: Request,
    conversation_id: ConversationId,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=200)] = None,
    order: Literal["asc", "desc"] = "asc",
) -> dict[str, Any]:
    """The stored history as message items, paginated like OpenAI's (``after``, ``has_more``).

    The default order is ``asc`` (oldest first, newest last).
    """
    gateway = gateway_of(request)
    user = await gateway.user(request)
    async with gateway.upstream(user, gateway.settings.default_model) as upstream:
        state = await load(upstream, conversation_id)
    history = _history(state)
    first = _first_index(state, history)
    items = [
        message_item(conversation_id, first + i, str(m.get("role")), str(m.get("content", "")))
        for i, m in enumerate(history)
    ]
    if order == "desc":
        items.reverse()
    if after is not None:
        cursor = item_index(after)
        if cursor is None:
            raise invalid(f"after={after!r} is not an item id of this conversation", param="after")
        items = [
            item
            for item in items
            if (
                (item_index(item["id"]) or 0) > cursor
                if order == "asc"
                else (item_index(item["id"]) or 0) < cursor
            )
        ]
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }
