"""What the chat agent reports: LLM spans and metrics, store timings, turn outcomes.

The LLM call gets a CLIENT span named ``chat <model>`` with the GenAI
semantic-convention attributes that fit (``gen_ai.operation.name``,
``gen_ai.system``, ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``) and, on failure, our error code
(``fame.error.code``); a stream records an event at its first piece. Store
operations get a span each and ``fame_chat_store_seconds``. Message texts
never go into spans or metrics.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from famefabric.chat import usage as token_usage
from famefabric.chat.model import ChatModelError
from famefabric.observability import metrics, tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span

T = TypeVar("T")

_PROMPT = metrics.CHAT_TOKENS.labels("prompt")
_COMPLETION = metrics.CHAT_TOKENS.labels("completion")


class LlmCall:
    """One LLM request as the telemetry sees it."""

    def __init__(self, model: str, *, streaming: bool) -> None:
        self.started = time.perf_counter()
        self.streaming = streaming
        self._first = True
        self._meter = token_usage.current_meter()
        self.span: Span | None = None
        if tracing.ACTIVE:
            self.span = tracing.start(
                f"chat {model}",
                kind="CLIENT",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.system": "openai",
                    "gen_ai.request.model": model,
                    "fame.stream": streaming,
                },
            )

    def piece(self) -> None:
        """Note a streamed piece; the first one is timed and marked."""
        if self._first:
            self._first = False
            metrics.CHAT_FIRST_TOKEN_SECONDS.observe(time.perf_counter() - self.started)
            if self.span is not None:
                self.span.add_event("first token")

    def usage(self, usage: Any) -> None:
        """Record the usage the server reported (an ``openai`` ``CompletionUsage``), if any.

        It is counted, set on the span, and handed to the turn's usage meter
        (:mod:`famefabric.chat.usage`) to be stored with the turn.
        """
        if self._meter is not None:
            reported = token_usage.TokenUsage.reported(usage)
            if reported is not None:
                self._meter.record(reported)
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
        if type(prompt) is int and prompt >= 0:
            _PROMPT.inc(prompt)
            if self.span is not None:
                self.span.set_attribute("gen_ai.usage.input_tokens", prompt)
        if type(completion) is int and completion >= 0:
            _COMPLETION.inc(completion)
            if self.span is not None:
                self.span.set_attribute("gen_ai.usage.output_tokens", completion)

    def end(self, error: BaseException | None = None) -> None:
        """Count a failure and end the span."""
        if isinstance(error, ChatModelError):
            metrics.CHAT_LLM_ERRORS.labels(error.error_code).inc()
        span = self.span
        if span is None:
            return
        self.span = None
        if isinstance(error, ChatModelError):
            tracing.fail(span, error.error_code, **{"fame.error.code": error.error_code})
        elif error is not None:
            tracing.fail(
                span, "cancelled" if isinstance(error, GeneratorExit) else type(error).__name__
            )
        elif self.streaming:
            span.add_event("end of stream")
        span.end()


async def timed_store(operation: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run a store operation inside its span and time it."""
    started = time.perf_counter()
    try:
        with tracing.span(f"store {operation}", **{"db.operation.name": operation}):
            return await call()
    finally:
        metrics.CHAT_STORE_SECONDS.labels(operation).observe(time.perf_counter() - started)


@asynccontextmanager
async def turn(mode: str) -> AsyncIterator[None]:
    """Count a turn by outcome and time it; it counts as an active conversation meanwhile."""
    started = time.perf_counter()
    outcome = "error"
    metrics.CHAT_LIVE.inc()
    try:
        yield
        outcome = "ok"
    except BaseException as exc:
        if isinstance(exc, GeneratorExit) or type(exc).__name__ == "CancelledError":
            outcome = "cancelled"
        raise
    finally:
        metrics.CHAT_LIVE.dec()
        metrics.CHAT_TURNS.labels(outcome).inc()
        if outcome == "ok":
            metrics.CHAT_TURN_SECONDS.labels(mode).observe(time.perf_counter() - started)
