"""What a conversation may start with besides its system prompt: metadata and seeded history.

=============================  ==========================================  =======
Input (``start_task`` payload)  Bound                                       Default
=============================  ==========================================  =======
``metadata``                   up to 16 pairs; keys 1-64 characters,       none
                               values strings of at most 512 characters
``history``                    up to 20 ``user``/``assistant`` messages,   none
                               each within the message-size limit
                               (``CHAT_MAX_MESSAGE_CHARS``)
=============================  ==========================================  =======

The metadata bounds are OpenAI's (Conversations API). Seeded messages become
the start of the history, in order, and are kept within the history window
like any others. Each check returns the value or raises
:class:`~famefabric.errors.ChatInputError` saying what was wrong and what is accepted.
"""

from __future__ import annotations

import json

from famefabric.chat.conversation import ChatMessage
from famefabric.errors import ChatInputError

__all__ = [
    "MAX_METADATA_KEY_CHARS",
    "MAX_METADATA_PAIRS",
    "MAX_METADATA_VALUE_CHARS",
    "MAX_SEEDED_MESSAGES",
    "decode_metadata",
    "encode_metadata",
    "metadata",
    "seeded_history",
]

MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MAX_SEEDED_MESSAGES = 20
METADATA_RULE = (
    f"an object of up to {MAX_METADATA_PAIRS} pairs whose keys are 1 to "
    f"{MAX_METADATA_KEY_CHARS} characters and whose values are strings of at most "
    f"{MAX_METADATA_VALUE_CHARS} characters"
)


def metadata(value: object) -> dict[str, str] | None:
    """Return ``value`` if it is conversation metadata (``None`` or ``{}`` is none).

    Raises:
        ChatInputError: not an object, too many pairs, a key or value too long,
            or a value that is not a string.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ChatInputError(f"metadata must be {METADATA_RULE}, got {type(value).__name__}")
    if len(value) > MAX_METADATA_PAIRS:
        raise ChatInputError(
            f"metadata has {len(value)} pairs, over the limit of {MAX_METADATA_PAIRS}: "
            f"metadata must be {METADATA_RULE}"
        )
    checked: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_METADATA_KEY_CHARS:
            shown = key[:20] + "…" if isinstance(key, str) and len(key) > 20 else key
            raise ChatInputError(
                f"metadata key {shown!r} is not 1 to {MAX_METADATA_KEY_CHARS} characters: "
                f"metadata must be {METADATA_RULE}"
            )
        if not isinstance(item, str):
            raise ChatInputError(
                f"metadata value of {key!r} is {type(item).__name__}, not a string: "
                f"metadata must be {METADATA_RULE}"
            )
        if len(item) > MAX_METADATA_VALUE_CHARS:
            raise ChatInputError(
                f"metadata value of {key!r} has {len(item)} characters, over the limit of "
                f"{MAX_METADATA_VALUE_CHARS}: metadata must be {METADATA_RULE}"
            )
        checked[key] = item
    return checked or None


def seeded_history(value: object, max_message_chars: int) -> tuple[ChatMessage, ...]:
    """Return the messages a conversation starts with (``None`` is none).

    Raises:
        ChatInputError: not a list, too many messages, a role other than user
            or assistant, content that is not a string or is too long.
    """
    if value is None:
        return ()
    accepted = (
        f"a list of up to {MAX_SEEDED_MESSAGES} messages "
        '{"role": "user" or "assistant", "content": text}'
    )
    if not isinstance(value, list):
        raise ChatInputError(f"history must be {accepted}, got {type(value).__name__}")
    if len(value) > MAX_SEEDED_MESSAGES:
        raise ChatInputError(
            f"history has {len(value)} messages, over the limit of {MAX_SEEDED_MESSAGES}: "
            "start with fewer and send the rest as turns"
        )
    messages: list[ChatMessage] = []
    for index, entry in enumerate(value):
        role = entry.get("role") if isinstance(entry, dict) else None
        content = entry.get("content") if isinstance(entry, dict) else None
        if role not in ("user", "assistant"):
            raise ChatInputError(
                f"history[{index}] has role {role!r}: history must be {accepted} "
                "(give a system message as system_prompt)"
            )
        if not isinstance(content, str):
            raise ChatInputError(
                f"history[{index}] content is {type(content).__name__}, not text: "
                f"history must be {accepted}"
            )
        if len(content) > max_message_chars:
            raise ChatInputError(
                f"history[{index}] has {len(content)} characters, over the limit of "
                f"{max_message_chars}: send a shorter message"
            )
        messages.append(ChatMessage("user" if role == "user" else "assistant", content))
    return tuple(messages)


def encode_metadata(value: dict[str, str] | None) -> str | None:
    """The metadata as stored: compact JSON, or ``None`` when there is none."""
    return None if not value else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def decode_metadata(stored: object) -> dict[str, str] | None:
    """The metadata a store read back (``None``, ``""`` or unreadable JSON is none)."""
    if not isinstance(stored, str | bytes) or not stored:
        return None
    try:
        value = json.loads(stored)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    return {str(k): str(v) for k, v in value.items()} or None
