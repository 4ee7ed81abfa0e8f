"""Property-based test of the gateway against its own OpenAPI document (Schemathesis).

Every operation of ``/openapi.json`` is called with generated requests
(valid and invalid) against a real gateway, sentinel, chat agent and stub
LLM. No request may get a 500, and every error must come in OpenAI's error
body shape. Examples per operation are bounded so the run stays well under
a minute.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, given, settings
from support.pool import ProcessPool
from support.web_stack import WebStack, start_web_stack

from famefabric.testing import OpenAIStubServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

EXAMPLES = 12


@pytest.fixture(scope="module")
def llm() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer() as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def web(module_processes: ProcessPool, llm: OpenAIStubServer) -> WebStack:
    return await start_web_stack(module_processes, llm)


def _document(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/openapi.json", timeout=10) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


@pytest.mark.asyncio(loop_scope="module")
async def test_the_openapi_document_describes_every_endpoint(web: WebStack) -> None:
    document = await asyncio.to_thread(_document, web.url)
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path in (
        "/v1/conversations",
        "/v1/conversations/{conversation_id}",
        "/v1/conversations/{conversation_id}/items",
        "/v1/responses",
        "/v1/chat/completions",
        "/v1/models",
    ):
        assert path in paths, path
    schema = schemathesis.openapi.from_dict(document)
    assert len(list(schema.get_all_operations())) >= 8


def no_500_and_openai_errors(
    ctx: Any, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """No 500, and every error is ``{"error": {"message", "type", "code"}}``."""
    assert response.status_code != 500, f"500 for {case.method} {case.path}: {response.text[:300]}"
    if response.status_code >= 400:
        body = json.loads(response.text)
        error = body["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str)
        assert "code" in error


def test_no_request_gets_a_500(web: WebStack) -> None:
    schema = schemathesis.openapi.from_url(f"{web.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[no_500_and_openai_errors], timeout=10)

        call()
