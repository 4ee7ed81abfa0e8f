"""Token usage per turn: what the LLM reported, kept with the turn's reply.

The model adapter reports the usage the server sent through the turn's
:class:`~famefabric.chat.telemetry.LlmCall`, which counts it in
``fame_chat_tokens_total`` and hands it to the :class:`UsageMeter` the chat
agent opened around the model call with :func:`metering`. The agent commits the
meter's :class:`TokenUsage` with the turn, so that it is stored on the reply
(``usage`` of an assistant message) and shown by ``fame conversations show``
and the REPL's ``/usage``. A server that reports no usage leaves it ``None``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

__all__ = ["TokenUsage", "UsageMeter", "current_meter", "describe", "metering", "total"]

_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


MAX_TOKENS = 2**53 - 1
"""The largest count kept: larger ones (a faulty or hostile server) count as not reported.

It fits SQLite's INTEGER and is exact in every JSON reader.
"""


def _count(value: object) -> int | None:
    return value if type(value) is int and 0 <= value <= MAX_TOKENS else None


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """The tokens of one turn (or a sum of turns), as the LLM counted them."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def reported(cls, usage: Any) -> TokenUsage | None:
        """Read an ``openai`` ``CompletionUsage`` (or any object with its attributes).

        Returns ``None`` when prompt or completion count is missing or not a
        whole number from 0 to :data:`MAX_TOKENS`; a missing total is their sum.
        """
        prompt = _count(getattr(usage, "prompt_tokens", None))
        completion = _count(getattr(usage, "completion_tokens", None))
        if prompt is None or completion is None:
            return None
        total_tokens = _count(getattr(usage, "total_tokens", None))
        return cls(
            prompt, completion, prompt + completion if total_tokens is None else total_tokens
        )

    @classmethod
    def from_json(cls, data: object) -> TokenUsage | None:
        """Read the shape :meth:`to_json` writes; ``None`` for anything else."""
        if not isinstance(data, dict):
            return None
        counts = [_count(data.get(name)) for name in _FIELDS]
        if any(count is None for count in counts):
            return None
        prompt, completion, total_tokens = counts
        assert prompt is not None and completion is not None and total_tokens is not None
        return cls(prompt, completion, total_tokens)

    def to_json(self) -> dict[str, int]:
        """Return ``{"prompt_tokens": .., "completion_tokens": .., "total_tokens": ..}``."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
        )


ZERO = TokenUsage(0, 0, 0)


def total(usages: Iterable[TokenUsage | None]) -> TokenUsage:
    """Sum the reported usages; unreported ones (``None``) count as nothing."""
    summed = ZERO
    for usage in usages:
        if usage is not None:
            summed += usage
    return summed


def describe(usage: TokenUsage | None) -> str:
    """Return ``"12 prompt + 3 completion = 15 tokens"``, or ``"not reported"``."""
    if usage is None:
        return "not reported"
    return (
        f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion"
        f" = {usage.total_tokens} tokens"
    )


class UsageMeter:
    """Collects the usage of the LLM calls made while it is the current meter."""

    __slots__ = ("usage",)

    def __init__(self) -> None:
        self.usage: TokenUsage | None = None

    def record(self, usage: TokenUsage) -> None:
        """Add one call's usage (a turn normally makes one call)."""
        self.usage = usage if self.usage is None else self.usage + usage


_METER: ContextVar[UsageMeter | None] = ContextVar("famefabric_usage_meter", default=None)


def current_meter() -> UsageMeter | None:
    """The meter of the turn being answered in this context, if one is open."""
    return _METER.get()


@contextlib.contextmanager
def metering() -> Iterator[UsageMeter]:
    """Open a meter for the LLM calls made inside the block (also across a stream's yields)."""
    meter = UsageMeter()
    token = _METER.set(meter)
    try:
        yield meter
    finally:
        # A stream abandoned by its consumer may be closed from another context.
        with contextlib.suppress(ValueError):
            _METER.reset(token)
