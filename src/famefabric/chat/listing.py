"""``fame conversations list``: one line per stored conversation, newest first.

Each line holds the id, when the conversation was last active (UTC, to the
second), the number of stored messages and the first words of the first user
message, so a conversation can be recognised without ``show``.
"""

from __future__ import annotations

import time

from famefabric.chat.conversation import ConversationState
from famefabric.chat.store import ConversationStore

PREVIEW_CHARS = 60


def describe(state: ConversationState) -> str:
    """Return the listing line of one conversation."""
    first = next((m.content for m in state.history if m.role == "user"), "")
    words = " ".join(first.split())
    if len(words) > PREVIEW_CHARS:
        words = words[: PREVIEW_CHARS - 1].rstrip() + "…"
    count = len(state.history)
    noun = "message" if count == 1 else "messages"
    preview = f'"{words}"' if words else "(no messages yet)"
    return f"{state.conversation_id}  {last_active(state)}  {count:>3} {noun:<8}  {preview}"


def last_active(state: ConversationState) -> str:
    """When ``state`` was last active, e.g. ``2026-12-06 20:45:03 UTC`` (``-`` if unknown)."""
    if state.updated_at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(state.updated_at))


async def list_conversations(store: ConversationStore, *, limit: int = 100) -> list[str]:
    """Return the listing lines of up to ``limit`` conversations, most recently active first.

    A conversation that ends between listing and loading is left out.
    """
    lines = []
    for conversation_id in await store.list_ids(limit=limit):
        state = await store.load(conversation_id)
        if state is not None:
            lines.append(describe(state))
    return lines
