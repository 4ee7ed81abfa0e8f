"""JSON bodies shaped like the ones the OpenAI API returns."""

from __future__ import annotations

import math
import re
import secrets
import time
from http import HTTPStatus
from typing import Any

SYSTEM_FINGERPRINT = "fp_stub0000"
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1")
_TOKEN = re.compile(r"\s*\S+\s*")
_ALPHANUMERIC = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

JSONObject = dict[str, Any]


def new_completion_id() -> str:
    """Return a fresh ``chatcmpl-...`` id."""
    return "chatcmpl-" + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(29))


def new_request_id() -> str:
    """Return a fresh value for the ``x-request-id`` response header."""
    return "req_" + secrets.token_hex(16)


def split_tokens(text: str) -> list[str]:
    """Split text into word-sized pieces that concatenate back to the text."""
    pieces = _TOKEN.findall(text)
    return pieces or ([text] if text else [])


def message_text(message: object) -> str:
    """Return the text of a chat message whose content is a string or a list of parts."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def echo_text(messages: list[Any]) -> str:
    """Return ``echo(<message count>): <last user message>``."""
    last_user = next(
        (
            message_text(m)
            for m in reversed(messages)
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        "",
    )
    return f"echo({len(messages)}): {last_user}"


def usage(messages: list[Any], completion_tokens: int) -> JSONObject:
    """Return a ``usage`` object with plausible token counts."""
    prompt_tokens = sum(4 + len(split_tokens(message_text(m))) for m in messages) + 3
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(model: str, text: str, messages: list[Any]) -> JSONObject:
    """Return a non-streaming ``chat.completion`` object answering with ``text``."""
    return {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage(messages, len(split_tokens(text))),
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def chunk(
    completion_id: str,
    created: int,
    model: str,
    *,
    delta: JSONObject | None = None,
    finish_reason: str | None = None,
    include_usage: bool = False,
    usage_object: JSONObject | None = None,
) -> JSONObject:
    """Return one ``chat.completion.chunk``.

    Args:
        completion_id: the id shared by all chunks of one completion.
        created: the creation time shared by all chunks.
        model: the model name to report.
        delta: the delta of the single choice; None for the trailing usage chunk.
        finish_reason: set on the last choice chunk.
        include_usage: whether the client asked for usage (adds a ``usage`` key).
        usage_object: the usage of the trailing usage chunk.
    """
    body: JSONObject = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if include_usage:
        body["usage"] = usage_object
    return body


def _mask_key(key: str) -> str:
    if len(key) <= 8:
        return key
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def error(
    status: int, *, model: str = "", api_key: str = "", message: str | None = None
) -> JSONObject:
    """Return the error body the OpenAI API sends with ``status``.

    Args:
        status: the HTTP status of the error.
        model: the requested model, quoted by the 404 and 429 messages.
        api_key: the key the client sent, quoted (masked) by the 401 message.
        message: replaces the default message while keeping type and code.
    """
    kind = "invalid_request_error" if status < 500 else "server_error"
    code: str | None = None
    if status == 400:
        text = "Invalid request: the request was rejected."
    elif status == 401:
        text = (
            f"Incorrect API key provided: {_mask_key(api_key)}. "
            "You can find your API key at https://platform.openai.com/account/api-keys."
        )
        code = "invalid_api_key"
    elif status == 404:
        text = f"The model `{model}` does not exist or you do not have access to it."
        code = "model_not_found"
    elif status == 429:
        text = (
            f"Rate limit reached for {model} in organization org-stub on requests per min "
            "(RPM): Limit 3, Used 3, Requested 1. Please try again in 1s. "
            "Visit https://platform.openai.com/account/rate-limits to learn more."
        )
        kind, code = "requests", "rate_limit_exceeded"
    elif status == 500:
        text = "The server had an error while processing your request. Sorry about that!"
    elif status == 503:
        text = "The engine is currently overloaded, please try again later."
    else:
        try:
            text = HTTPStatus(status).phrase + "."
        except ValueError:
            text = f"HTTP error {status}."
    return {"error": {"message": message or text, "type": kind, "param": None, "code": code}}


def error_message(message: str, *, param: str | None = None, code: str | None = None) -> JSONObject:
    """Return an ``invalid_request_error`` body with a chosen message."""
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


def retry_after_headers(seconds: float) -> list[tuple[str, str]]:
    """Return the headers telling a client to wait ``seconds`` before retrying."""
    return [
        ("retry-after-ms", str(max(0, round(seconds * 1000)))),
        ("retry-after", str(max(0, math.ceil(seconds)))),
    ]


def model_object(model: str) -> JSONObject:
    """Return one entry of the model list."""
    return {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "system"}


def model_list(models: tuple[str, ...]) -> JSONObject:
    """Return the body of ``GET /v1/models``."""
    return {"object": "list", "data": [model_object(m) for m in models]}
