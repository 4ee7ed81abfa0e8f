"""Conversation state and the history window, free of I/O.

A conversation is a system prompt plus a history of user and assistant
messages. A turn sends ``[system] + history + [user]`` to the model; when the
model answers, the user message and the reply are appended together and the
history is trimmed to the last ``2 * max_history_length`` messages, so that
``max_history_length`` past exchanges are kept and sent.

An empty (or whitespace-only) user message asks the assistant to speak
without new input: it is neither sent nor stored, only the reply is stored.

A stored reply carries the token usage the LLM reported for its turn
(:mod:`famefabric.chat.usage`); it is never sent to the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from famefabric.chat.usage import TokenUsage, total

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Answer clearly and concisely."
DEFAULT_MAX_HISTORY_LENGTH = 10

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation, as sent to the model.

    ``usage`` is the token usage of the turn a stored reply answered, when the
    LLM reported it; it is not part of what the model receives.
    """

    role: Role
    content: str
    usage: TokenUsage | None = None

    def to_dict(self) -> dict[str, str]:
        """Return the message in the Chat Completions wire shape."""
        return {"role": self.role, "content": self.content}

    def to_record(self) -> dict[str, Any]:
        """Return the message as stored and shown: role, content and ``usage`` when known."""
        record: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.usage is not None:
            record["usage"] = self.usage.to_json()
        return record

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> ChatMessage:
        """Build a message from :meth:`to_record`'s shape (an unreadable usage is dropped).

        Raises:
            ValueError: the role is not one of system, user, assistant.
        """
        message = cls.from_dict(data)
        usage = TokenUsage.from_json(data.get("usage"))
        return message if usage is None else replace(message, usage=usage)

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> ChatMessage:
        """Build a message from its wire shape.

        Raises:
            ValueError: the role is not one of system, user, assistant.
        """
        role = data.get("role")
        if role == "system":
            return cls(role="system", content=str(data.get("content", "")))
        if role == "user":
            return cls(role="user", content=str(data.get("content", "")))
        if role == "assistant":
            return cls(role="assistant", content=str(data.get("content", "")))
        raise ValueError(f"unknown message role {role!r}; expected system, user or assistant")


def is_blank(text: str) -> bool:
    """Tell whether a user message carries no input (empty or whitespace only)."""
    return not text.strip()


@dataclass(frozen=True, slots=True)
class ConversationState:
    """The stored state of one conversation.

    ``version`` counts committed turns; stores use it to refuse a commit made
    against a state that changed meanwhile.
    """

    conversation_id: str
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_history_length: int = DEFAULT_MAX_HISTORY_LENGTH
    history: tuple[ChatMessage, ...] = field(default_factory=tuple)
    version: int = 0
    # When the conversation was last active (the store's clock, Unix seconds), set by
    # a store's load; not part of equality (two loads of one state compare equal).
    updated_at: float | None = field(default=None, compare=False)
    # The caller's key/value pairs (chat/metadata.py bounds them); ``None`` when none.
    metadata: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if not self.conversation_id:
            raise ValueError("conversation id must be a non-empty string")
        if self.max_history_length < 1:
            raise ValueError(f"max_history_length={self.max_history_length!r} must be at least 1")

    @property
    def max_messages(self) -> int:
        """How many history messages are kept and sent: two per exchange."""
        return 2 * self.max_history_length

    def request_messages(self, user_message: str) -> list[ChatMessage]:
        """Return what the model receives for a turn with ``user_message``."""
        messages = [ChatMessage("system", self.system_prompt)]
        messages.extend(self.history[-self.max_messages :])
        if not is_blank(user_message):
            messages.append(ChatMessage("user", user_message))
        return messages

    def with_turn(
        self, user_message: str, reply: str, usage: TokenUsage | None = None
    ) -> ConversationState:
        """Return the state after a successful turn, trimmed to the window."""
        added = turn_messages(user_message, reply, usage)
        history = (*self.history, *added)[-self.max_messages :]
        return replace(self, history=history, version=self.version + 1)


def turn_messages(
    user_message: str, reply: str, usage: TokenUsage | None = None
) -> tuple[ChatMessage, ...]:
    """Return the messages one turn appends to the history; the reply carries ``usage``."""
    answer = ChatMessage("assistant", reply, usage)
    if is_blank(user_message):
        return (answer,)
    return (ChatMessage("user", user_message), answer)


def trim(history: Sequence[ChatMessage], max_messages: int) -> tuple[ChatMessage, ...]:
    """Keep the last ``max_messages`` messages of ``history``."""
    return tuple(history[-max_messages:]) if max_messages > 0 else ()


def conversation_to_json(state: ConversationState) -> dict[str, Any]:
    """Return a conversation as JSON, for ``get_conversation`` and the CLI.

    Replies carry their turn's token ``usage`` when the LLM reported it, and
    ``usage`` is the sum over the kept turns that have one (absent when none has);
    ``metadata`` is there when the conversation has some.
    """
    shown: dict[str, Any] = {
        "id": state.conversation_id,
        "system_prompt": state.system_prompt,
        "max_history_length": state.max_history_length,
        "version": state.version,
        "history": [message.to_record() for message in state.history],
    }
    if state.metadata is not None:
        shown["metadata"] = dict(state.metadata)
    if any(message.usage is not None for message in state.history):
        shown["usage"] = total(message.usage for message in state.history).to_json()
    return shown
