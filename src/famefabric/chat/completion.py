"""Stateless completion: a whole message list in, one reply out, nothing stored.

The chat agent serves these operations next to its conversations, for
callers that keep the history themselves (the HTTP gateway's Chat
Completions endpoint, and with it any OpenAI-compatible tool). The caller
sends every message; the agent checks the list, asks the model and returns
(or streams) the reply. No conversation is created, read or changed, so
there is nothing to own and nothing to clean up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from famefabric.agent.base import BaseAgent
from famefabric.agent.operations import operation
from famefabric.chat.conversation import ChatMessage
from famefabric.chat.model import ChatModel
from famefabric.errors import JSONValue, OperationError
from famefabric.protocol import jsonrpc

MAX_COMPLETION_MESSAGES = 256
"""The most messages one stateless completion takes."""


def _invalid(message: str) -> OperationError:
    return OperationError(message, code=jsonrpc.INVALID_PARAMS, data={"code": "invalid_params"})


def parse_messages(
    messages: object, *, max_message_chars: int, max_messages: int = MAX_COMPLETION_MESSAGES
) -> list[ChatMessage]:
    """Check a Chat Completions message list and return it as :class:`ChatMessage` values.

    Each message is ``{"role": "system"|"developer"|"user"|"assistant", "content": str}``
    (``developer`` is read as ``system``); at least one message, at most
    ``max_messages``, each at most ``max_message_chars`` characters.

    Raises:
        OperationError: JSON-RPC ``-32602`` with ``data.code == "invalid_params"``;
            the message says which entry is wrong and why.
    """
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages must be a non-empty list of {role, content} objects")
    if len(messages) > max_messages:
        raise _invalid(f"{len(messages)} messages is over the limit of {max_messages}: send fewer")
    parsed: list[ChatMessage] = []
    for index, entry in enumerate(messages):
        if not isinstance(entry, dict):
            raise _invalid(f"messages[{index}] must be an object with role and content")
        role, content = entry.get("role"), entry.get("content")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise _invalid(
                f"messages[{index}].role is {role!r}: expected system, developer, user or assistant"
            )
        if not isinstance(content, str):
            raise _invalid(f"messages[{index}].content must be a string")
        if len(content) > max_message_chars:
            raise _invalid(
                f"messages[{index}] has {len(content)} characters, over the limit of "
                f"{max_message_chars}: send a shorter one"
            )
        parsed.append(ChatMessage.from_dict({"role": role, "content": content}))
    return parsed


class StatelessCompletion(BaseAgent):
    """The ``complete`` and ``stream_complete`` operations, for agents with a model.

    A subclass sets :attr:`model` and :attr:`max_message_chars`.
    """

    model: ChatModel
    max_message_chars: int

    @operation
    async def complete(self, messages: list[JSONValue]) -> str:
        """Return the model's reply to ``messages`` (a Chat Completions list); stores nothing."""
        checked = parse_messages(messages, max_message_chars=self.max_message_chars)
        return await self.model.complete(checked)

    @operation
    async def stream_complete(self, messages: list[JSONValue]) -> AsyncIterator[str]:
        """Yield the model's reply to ``messages`` as it is written; stores nothing.

        Closing the stream (the caller's cancel notice) closes the upstream request.
        """
        checked = parse_messages(messages, max_message_chars=self.max_message_chars)
        async with aclosing(self.model.stream(checked)) as stream:
            async for piece in stream:
                yield piece
