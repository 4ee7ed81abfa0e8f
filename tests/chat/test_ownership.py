"""Conversation ownership over a real sentinel with tokens: each subject sees only its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from famefabric import Agent, FameFabric, RemoteError, Sentinel
from famefabric.chat import ChatAgent
from famefabric.chat.conversation import ConversationState
from famefabric.chat.openai_model import OpenAIChatModel
from famefabric.chat.store import ConversationStore
from famefabric.chat.stores import MemoryConversationStore
from famefabric.chat.stores.redis import RedisConversationStore
from famefabric.chat.stores.sqlite import SQLiteConversationStore
from famefabric.security import StaticToken, TokenVerifier, mint_token
from famefabric.settings import FabricSettings
from famefabric.testing import OpenAIStubServer

pytestmark = pytest.mark.timeout(90)
SECRET = b"o" * 32


@dataclass
class World:
    store: ConversationStore
    alice: Agent
    bob: Agent
    admin: Agent


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ConversationStore]:
    built: ConversationStore
    if request.param == "memory":
        built = MemoryConversationStore()
    elif request.param == "sqlite":
        built = SQLiteConversationStore(tmp_path / "c.db")
    else:
        url = request.getfixturevalue("redis_url")
        built = RedisConversationStore(url, key_prefix=f"own:{uuid.uuid4().hex}:")
    async with built:
        yield built


@pytest.fixture
async def world(store: ConversationStore) -> AsyncIterator[World]:
    verifier = TokenVerifier(secret=SECRET)
    async with AsyncExitStack() as stack:
        llm = stack.enter_context(OpenAIStubServer())
        sentinel = await stack.enter_async_context(
            Sentinel(host="127.0.0.1", port=0, system_id="ownSentinel01", verifier=verifier)
        )
        model = OpenAIChatModel(model="m", api_key="k", base_url=llm.url, max_retries=0)
        stack.push_async_callback(model.aclose)
        settings = replace(
            FabricSettings(),
            admission_url=f"ws://127.0.0.1:{sentinel.port}/fame/v1/attach/ws/downstream",
            call_timeout=10.0,
        )

        async def fabric(subject: str, **claims: object) -> FameFabric:
            token = StaticToken(mint_token(SECRET, subject=subject, **claims))  # type: ignore[arg-type]
            return await stack.enter_async_context(
                FameFabric.create(settings=settings, token=token)
            )

        served = await fabric("chat-agent", serve=["chat@fame.fabric"])
        await served.serve(ChatAgent(model=model, store=store), "chat@fame.fabric")
        agents = []
        for subject, admin in (("alice", False), ("bob", False), ("root", True)):
            node = await fabric(subject, call=["chat@fame.fabric"], admin=admin)
            agents.append(Agent.remote_by_address("chat@fame.fabric", fabric=node))
        yield World(store, *agents)


async def error_of(call: object) -> tuple[object, str]:
    with pytest.raises(RemoteError) as info:
        await call  # type: ignore[misc]
    return info.value.data, info.value.message


async def test_another_subjects_conversation_answers_like_an_unknown_id(world: World) -> None:
    await world.alice.start_task(id="c1", payload={"system_prompt": "p"})
    reply = await world.alice.run_turn("c1", "secret plan")
    assert reply.endswith("secret plan")

    for call_of in (
        lambda agent, cid: agent.get_conversation(cid),
        lambda agent, cid: agent.run_turn(cid, "hi"),
    ):
        foreign = await error_of(call_of(world.bob, "c1"))
        unknown = await error_of(call_of(world.bob, "never-used"))
        assert foreign[0] == unknown[0] == {"code": "conversation_not_found"}
        assert foreign[1] == unknown[1].replace("never-used", "c1")

    assert await world.bob.list_conversations() == []
    await world.bob.end_conversation("c1")  # harmless, like any unknown id
    # Starting "c1" is bob's own conversation; alice's is untouched.
    await world.bob.start_task(id="c1", payload={"system_prompt": "bob's"})
    assert await world.bob.list_conversations() == ["c1"]
    bobs = await world.bob.get_conversation("c1")
    assert bobs["system_prompt"] == "bob's" and bobs["history"] == []
    alices = await world.alice.get_conversation("c1")
    assert alices["id"] == "c1" and [m["content"] for m in alices["history"]] == [
        "secret plan",
        reply,
    ]
    assert await world.alice.list_conversations() == ["c1"]
    # A full key is not a valid id for anyone but an admin.
    assert (await error_of(world.bob.get_conversation("alice\x1fc1")))[0] == {
        "code": "invalid_params"
    }


async def test_an_admin_sees_every_conversation_and_legacy_rows_are_admin_only(
    world: World,
) -> None:
    await world.alice.start_task(id="a1", payload={})
    await world.bob.start_task(id="b1", payload={})
    await world.store.create(ConversationState("legacy", system_prompt="old"))
    listed = set(await world.admin.list_conversations())
    assert listed == {"alice\x1fa1", "bob\x1fb1", "legacy"}
    assert (await world.admin.get_conversation("alice\x1fa1"))["id"] == "alice\x1fa1"
    assert (await world.admin.get_conversation("legacy"))["system_prompt"] == "old"
    assert (await error_of(world.alice.get_conversation("legacy")))[0] == {
        "code": "conversation_not_found"
    }
    await world.admin.end_conversation("bob\x1fb1")
    assert await world.bob.list_conversations() == []
