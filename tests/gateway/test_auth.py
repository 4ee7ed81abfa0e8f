"""The gateway with tokens: 401, 403, and one user never sees another's conversations.

A real sentinel verifying HS256 tokens (``FAME_AUTH_SECRET``), the chat agent
with a token that may serve ``chat@fame.fabric``, and ``fame gateway`` with
the same secret. Each user calls with the official ``openai`` SDK and their
own fame token; the gateway attaches one link per user with that token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import pytest_asyncio
from support.agents import our_chat_agent, start_agents
from support.pool import ProcessPool
from support.sentinels import OurSentinel
from support.web_stack import start_gateway

from famefabric.security.tokens import mint_token
from famefabric.testing import OpenAIStubServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90), pytest.mark.asyncio(loop_scope="module")]

CHAT = "chat@fame.fabric"
SECRET = "gateway-test-secret-0123456789abcdef-0123456789"
WAIT = 10.0


class AuthSentinel(OurSentinel):
    """Our sentinel with ``FAME_AUTH_SECRET`` set: every attach needs a token."""

    def _env(self) -> dict[str, str]:
        return {"FAME_AUTH_SECRET": SECRET}


def token(
    subject: str,
    *,
    call: tuple[str, ...] = (CHAT,),
    secret: str = SECRET,
    issued_ago: float = 0.0,
) -> str:
    now = time.time() - issued_ago
    return mint_token(secret.encode(), subject=subject, call=call, ttl=600, now=now)


@dataclass
class Stack:
    url: str
    llm: OpenAIStubServer
    sentinel: OurSentinel

    def client(self, bearer: str | None) -> openai.AsyncOpenAI:
        headers = {} if bearer is not None else {"Authorization": ""}
        return openai.AsyncOpenAI(
            base_url=f"{self.url}/v1",
            api_key=bearer or "none",
            max_retries=0,
            timeout=WAIT,
            default_headers=headers,
        )


@pytest.fixture(scope="module")
def llm() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer() as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    module_processes: ProcessPool, llm: OpenAIStubServer, tmp_path_factory: pytest.TempPathFactory
) -> Stack:
    sentinel = AuthSentinel(
        node_id="gatewayAuth01", name="auth-sentinel", log_dir=Path(tmp_path_factory.mktemp("auth"))
    )
    module_processes.processes.append(sentinel.process)
    await sentinel.start()
    spec = our_chat_agent(CHAT, llm.url)
    agent_token = mint_token(SECRET.encode(), subject="chat-agent", serve=[CHAT], ttl=3600)
    spec = dataclasses.replace(spec, env={**spec.env, "FAME_TOKEN": agent_token})
    await start_agents(module_processes, sentinel, [spec])
    _, url = await start_gateway(module_processes, sentinel, {"FAME_AUTH_SECRET": SECRET})
    return Stack(url, llm, sentinel)


async def get_json(url: str, bearer: str) -> dict[str, Any]:
    def fetch() -> dict[str, Any]:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {bearer}"})
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body

    return await asyncio.to_thread(fetch)


async def test_a_user_with_a_token_chats(stack: Stack) -> None:
    async with stack.client(token("alice")) as client:
        conversation = await client.conversations.create()
        reply = await client.responses.create(model=CHAT, input="hi", conversation=conversation.id)
    assert reply.output_text == "echo(2): hi"


async def test_missing_forged_and_expired_tokens_are_401(stack: Stack) -> None:
    cases = {
        "missing": None,
        "forged": token("mallory", secret="another-secret-0123456789abcdef-0123456789"),
        "expired": token("alice", issued_ago=3600),
        "garbage": "not a token at all",
    }
    for name, bearer in cases.items():
        async with stack.client(bearer) as client:
            with pytest.raises(openai.AuthenticationError) as info:
                await client.responses.create(model=CHAT, input="x")
        assert info.value.status_code == 401, name
        assert info.value.code == "invalid_token", name
        if bearer and " " not in bearer:
            assert bearer not in info.value.message, name


async def test_a_token_without_the_call_permission_is_403(stack: Stack) -> None:
    async with stack.client(token("carol", call=("echo@fame.fabric",))) as client:
        with pytest.raises(openai.PermissionDeniedError) as info:
            await client.responses.create(model=CHAT, input="x")
    assert info.value.code == "forbidden"
    assert "chat@fame.fabric" in info.value.message


async def test_each_user_gets_a_link_of_their_own(stack: Stack) -> None:
    before = (await get_json(f"{stack.url}/healthz", token("dave")))["links"]
    for user in ("erin", "frank"):
        async with stack.client(token(user)) as client:
            await client.responses.create(model=CHAT, input="hello")
    after = (await get_json(f"{stack.url}/healthz", token("dave")))["links"]
    assert after == before + 2


async def test_two_users_cannot_see_each_others_conversations(stack: Stack) -> None:
    alice, bob = token("alice"), token("bob")
    async with stack.client(alice) as client:
        conversation = await client.conversations.create()
        await client.responses.create(
            model=CHAT, input="alice's secret", conversation=conversation.id
        )
    async with stack.client(bob) as client:
        with pytest.raises(openai.NotFoundError):
            await client.conversations.retrieve(conversation.id)
        with pytest.raises(openai.NotFoundError):
            await client.conversations.items.list(conversation.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.create(
                model=CHAT, input="mine now", conversation=conversation.id
            )
        with pytest.raises(openai.NotFoundError):
            await client.conversations.delete(conversation.id)
    listed = await get_json(f"{stack.url}/v1/conversations", bob)
    assert conversation.id not in [entry["id"] for entry in listed["data"]]
    async with stack.client(alice) as client:
        items = await client.conversations.items.list(conversation.id)
    assert items.data[0].content[0].text == "alice's secret"  # type: ignore[union-attr]


async def post_json(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    def send() -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=WAIT) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    return await asyncio.to_thread(send)


async def test_a_login_link_signs_in_once(
    stack: Stack, module_processes: ProcessPool, tmp_path: Path
) -> None:
    user_token = token("webuser")
    token_file, link_file = tmp_path / "web.token", tmp_path / "login-link"
    token_file.write_text(user_token)
    _, url = await start_gateway(
        module_processes,
        stack.sentinel,
        {
            "FAME_AUTH_SECRET": SECRET,
            "FAME_GATEWAY_LOGIN_TOKEN_FILE": str(token_file),
            "FAME_GATEWAY_LOGIN_LINK_FILE": str(link_file),
        },
    )
    link = link_file.read_text().strip()
    assert link.startswith(f"{url}/#login=")
    assert link_file.stat().st_mode & 0o077 == 0
    code = link.split("#login=", 1)[1]
    status, body = await post_json(f"{url}/v1/login", {"code": code + "x"})
    assert status == 401 and body["error"]["code"] == "invalid_login_code"
    status, body = await post_json(f"{url}/v1/login", {"code": code})
    assert status == 200 and body["token"] == user_token
    status, body = await post_json(f"{url}/v1/login", {"code": code})
    assert status == 401
    assert user_token not in json.dumps(body)
