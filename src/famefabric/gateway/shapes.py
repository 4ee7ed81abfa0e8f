"""OpenAI object shapes: requests the gateway accepts and objects it answers.

Request models ignore fields they do not know (an OpenAI client may send
``temperature``, ``store`` …, which the fabric's agents do not take).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from famefabric.chat.metadata import MAX_SEEDED_MESSAGES
from famefabric.chat.metadata import metadata as checked_metadata
from famefabric.gateway.errors import invalid
from famefabric.protocol.ids import ALPHABET, base62, new_id

MAX_TEXT_CHARS = 200_000
MAX_ITEMS = 256


class ContentPart(BaseModel):
    """A text part of a message's content."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["input_text", "output_text", "text"] = "input_text"
    text: str = Field(max_length=MAX_TEXT_CHARS)


class MessageItem(BaseModel):
    """A message: ``{"role", "content"}`` with text or a list of text parts."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart] = Field(max_length=MAX_TEXT_CHARS)

    def text(self) -> str:
        """The message's text (parts joined)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def chat_role(self) -> str:
        """The role as the chat agent knows it (``developer`` is ``system``)."""
        return "system" if self.role == "developer" else self.role


class ConversationCreate(BaseModel):
    """``POST /v1/conversations``: metadata and initial items within the chat agent's bounds.

    ``metadata``: up to 16 pairs, keys 1-64 characters, values strings of at most 512
    (checked before pydantic's own types, so the message names the rule);
    ``items``: up to 20 messages.
    """

    model_config = ConfigDict(extra="ignore")
    metadata: dict[str, str] | None = None
    items: list[MessageItem] | None = Field(default=None, max_length=MAX_SEEDED_MESSAGES)

    @field_validator("metadata", mode="before")
    @classmethod
    def _bounded_metadata(cls, value: object) -> dict[str, str] | None:
        return checked_metadata(value)


class ConversationRef(BaseModel):
    """``{"id": ...}``, the object form of a conversation reference."""

    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=200)


class ResponseCreate(BaseModel):
    """``POST /v1/responses``."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(default=None, max_length=300)
    input: str | list[MessageItem] = Field(max_length=MAX_TEXT_CHARS)
    instructions: str | None = Field(default=None, max_length=MAX_TEXT_CHARS)
    conversation: str | ConversationRef | None = None
    stream: bool = False

    def conversation_id(self) -> str | None:
        """The conversation to continue, if any."""
        if isinstance(self.conversation, ConversationRef):
            return self.conversation.id
        return self.conversation or None

    def messages(self) -> list[dict[str, str]]:
        """The input as chat messages (a string is one user message)."""
        if isinstance(self.input, str):
            return [{"role": "user", "content": self.input}]
        return [{"role": item.chat_role(), "content": item.text()} for item in self.input]


class ChatMessageIn(BaseModel):
    """A Chat Completions message."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart] = Field(max_length=MAX_TEXT_CHARS)

    def text(self) -> str:
        """The message's text."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionCreate(BaseModel):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(default=None, max_length=300)
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=MAX_ITEMS)
    stream: bool = False


# -- ids ------------------------------------------------------------------------------


def new_conversation_id() -> str:
    """A conversation id that carries its creation time: ``conv_<ms base62><random>``.

    The chat agent stores no creation time; the gateway reads it back from the id
    (:func:`created_at`), so nothing needs storing in the gateway either.
    """
    millis = int(time.time() * 1000)
    return f"conv_{base62(millis.to_bytes(6, 'big')).rjust(8, '0')}{new_id()}"


def created_at(conversation_id: str) -> int:
    """The creation time (unix seconds) of a gateway conversation id; 0 for other ids."""
    if not conversation_id.startswith("conv_") or len(conversation_id) < 13:
        return 0
    digits = conversation_id[5:13]
    value = 0
    for char in digits:
        index = ALPHABET.find(char)
        if index < 0:
            return 0
        value = value * 62 + index
    return value // 1000


def new_response_id() -> str:
    """A fresh response id."""
    return f"resp_{new_id()}{new_id()}"


def item_id(conversation_id: str, index: int) -> str:
    """The id of the message at ``index`` (counted from the conversation's first message)."""
    return f"msg_{index:08d}_{conversation_id[-16:]}"


def item_index(value: str) -> int | None:
    """The index in an item id made by :func:`item_id`, or None."""
    parts = value.split("_")
    if len(parts) < 3 or parts[0] != "msg" or not parts[1].isdigit():
        return None
    return int(parts[1])


# -- objects ----------------------------------------------------------------------------


def conversation_object(conversation_id: str, **extra: Any) -> dict[str, Any]:
    """A ``conversation`` object."""
    return {
        "id": conversation_id,
        "object": "conversation",
        "created_at": created_at(conversation_id),
        "metadata": {},
        **extra,
    }


def message_item(conversation_id: str, index: int, role: str, text: str) -> dict[str, Any]:
    """A stored message as a conversation item."""
    part_type = "output_text" if role == "assistant" else "input_text"
    part: dict[str, Any] = {"type": part_type, "text": text}
    if role == "assistant":
        part["annotations"] = []
        part["logprobs"] = []
    return {
        "type": "message",
        "id": item_id(conversation_id, index),
        "status": "completed",
        "role": role,
        "content": [part],
    }


def output_message(message_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    """The assistant message of a response."""
    content = (
        [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        if status == "completed"
        else []
    )
    return {
        "type": "message",
        "id": message_id,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def response_object(
    response_id: str,
    model: str,
    *,
    status: str,
    output: list[dict[str, Any]],
    conversation_id: str | None,
    instructions: str | None,
    created: int,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``response`` object."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": error,
        "incomplete_details": None,
        "instructions": instructions,
        "model": model,
        "output": output,
        "parallel_tool_calls": False,
        "tool_choice": "none",
        "tools": [],
        "conversation": {"id": conversation_id} if conversation_id else None,
        "usage": None,
        "metadata": {},
    }


def one_user_message(body: ResponseCreate) -> str:
    """The single user message of a turn of a conversation.

    Raises:
        GatewayError: 400 when the input is not exactly one user message.
    """
    messages = body.messages()
    if len(messages) != 1 or messages[0]["role"] != "user":
        raise invalid(
            "a turn of a conversation takes one user message as input "
            "(a string, or one item with role 'user')",
            param="input",
        )
    return messages[0]["content"]
