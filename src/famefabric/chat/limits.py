"""What the chat agent accepts from a caller, checked before anything is stored.

=============================  ================================  =======
Input                          Bound (environment variable)      Default
=============================  ================================  =======
``max_history_length``         1 .. ``CHAT_MAX_HISTORY_LIMIT``   1000
``system_prompt``              ``CHAT_MAX_SYSTEM_PROMPT_CHARS``  32000
conversation id                1-128 of ``A-Z a-z 0-9 . _ : -``  fixed
=============================  ================================  =======

Each check returns the value or raises :class:`ChatInputError`, whose
message says, in the caller's terms, what was wrong and what is accepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from famefabric.errors import ChatInputError, ConfigurationError
from famefabric.settings import env_int

__all__ = ["ChatInputError", "ChatInputLimits", "conversation_id"]

MAX_HISTORY_LIMIT_ENV = "CHAT_MAX_HISTORY_LIMIT"
MAX_SYSTEM_PROMPT_ENV = "CHAT_MAX_SYSTEM_PROMPT_CHARS"
DEFAULT_MAX_HISTORY_LIMIT = 1000
DEFAULT_MAX_SYSTEM_PROMPT_CHARS = 32_000
MAX_CONVERSATION_ID_CHARS = 128
CONVERSATION_ID_RULE = (
    f"1 to {MAX_CONVERSATION_ID_CHARS} characters among letters, digits and . _ : -"
)
_CONVERSATION_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_CONVERSATION_ID_CHARS}}}")


@dataclass(frozen=True, slots=True)
class ChatInputLimits:
    """The configurable bounds; see the module docstring.

    Raises:
        ConfigurationError: a bound is not a positive integer.
    """

    max_history_limit: int = DEFAULT_MAX_HISTORY_LIMIT
    max_system_prompt_chars: int = DEFAULT_MAX_SYSTEM_PROMPT_CHARS

    def __post_init__(self) -> None:
        for name in ("max_history_limit", "max_system_prompt_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"chat {name} must be a positive integer, got {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ChatInputLimits:
        """Read ``CHAT_MAX_HISTORY_LIMIT`` and ``CHAT_MAX_SYSTEM_PROMPT_CHARS``.

        Raises:
            ConfigurationError: a value is not a positive integer.
        """
        return cls(
            max_history_limit=env_int(
                environ, MAX_HISTORY_LIMIT_ENV, DEFAULT_MAX_HISTORY_LIMIT, minimum=1
            ),
            max_system_prompt_chars=env_int(
                environ, MAX_SYSTEM_PROMPT_ENV, DEFAULT_MAX_SYSTEM_PROMPT_CHARS, minimum=1
            ),
        )

    def history_length(self, value: object) -> int:
        """Return ``value`` if it is a whole number from 1 to the limit.

        Raises:
            ChatInputError: anything else (0, negative, too big, null, text, fractions).
        """
        accepted = f"a whole number from 1 to {self.max_history_limit}"
        if value is None:
            raise ChatInputError(
                f"max_history_length is empty: give {accepted}, or leave it out for the default"
            )
        if isinstance(value, bool) or not isinstance(value, int):
            raise ChatInputError(f"max_history_length must be {accepted}, got {_show(value)}")
        if not 1 <= value <= self.max_history_limit:
            raise ChatInputError(f"max_history_length must be {accepted}, got {_show(value)}")
        return value

    def system_prompt(self, value: object) -> str:
        """Return ``value`` if it is text within the size limit.

        Raises:
            ChatInputError: it is not text, or it is too long.
        """
        if not isinstance(value, str):
            raise ChatInputError(
                f"system_prompt must be text, got {_kind(value)}; leave it out for the default"
            )
        if len(value) > self.max_system_prompt_chars:
            raise ChatInputError(
                f"system_prompt of {len(value):,} characters is over the limit of "
                f"{self.max_system_prompt_chars:,}: shorten it"
            )
        return value


def conversation_id(value: object) -> str:
    """Return ``value`` if it is a valid conversation id (:data:`CONVERSATION_ID_RULE`).

    Raises:
        ChatInputError: it is not text, is empty or too long, or has other characters.
    """
    if not isinstance(value, str):
        raise ChatInputError(
            f"the conversation id must be text ({CONVERSATION_ID_RULE}), got {_kind(value)}"
        )
    if not _CONVERSATION_ID.fullmatch(value):
        raise ChatInputError(
            f"the conversation id {_show(value)} is not valid: use {CONVERSATION_ID_RULE}"
        )
    return value


def _kind(value: object) -> str:
    names = {
        type(None): "null",
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "an object",
    }
    return names.get(type(value), "a value of another kind")


def _show(value: object) -> str:
    """Show a caller's value briefly: long values are cut, big numbers summarized."""
    if isinstance(value, bool):
        return _kind(value)
    if isinstance(value, int) and abs(value) >= 10**12:
        return f"a {len(str(abs(value)))}-digit number"
    if isinstance(value, str | int | float):
        text = repr(value)
        return text if len(text) <= 40 else f"{text[:37]}…' ({len(str(value)):,} characters)"
    return _kind(value)
