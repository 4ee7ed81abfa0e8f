"""RemoteChatSession: a turn whose replica goes away is sent again with the same turn id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, aclosing
from dataclasses import replace
from pathlib import Path

import pytest

from famefabric import FameFabric, Sentinel
from famefabric.agent.proxy import RemoteAgent
from famefabric.chat import ChatAgent
from famefabric.chat.client import RemoteChatSession
from famefabric.chat.openai_model import OpenAIChatModel
from famefabric.chat.stores import SQLiteConversationStore
from famefabric.settings import FabricSettings
from famefabric.testing import Delay, OpenAIStubServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def llm() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer() as server:
        yield server


@pytest.fixture
async def sentinel() -> AsyncIterator[Sentinel]:
    async with Sentinel(host="127.0.0.1", port=0, system_id="retrysentinel01") as running:
        yield running


async def test_a_turn_cut_by_a_departing_replica_is_answered_once_by_another(
    sentinel: Sentinel, llm: OpenAIStubServer, tmp_path: Path
) -> None:
    settings = replace(
        FabricSettings(),
        admission_url=f"ws://127.0.0.1:{sentinel.port}/fame/v1/attach/ws/downstream",
        call_timeout=20.0,
    )
    database = str(tmp_path / "conversations.db")
    async with AsyncExitStack() as stack:
        replicas: dict[str, tuple[ChatAgent, AsyncExitStack]] = {}
        for key in ("key-a", "key-b"):
            # Each replica calls the LLM with its own key, so the stub tells them apart.
            model = OpenAIChatModel(
                model="m", api_key=key, base_url=llm.url, timeout=10.0, max_retries=0
            )
            stack.push_async_callback(model.aclose)
            agent = ChatAgent(
                model=model,
                store=await stack.enter_async_context(SQLiteConversationStore(database)),
            )
            own = await stack.enter_async_context(AsyncExitStack())
            fabric = await own.enter_async_context(FameFabric.create(settings=settings))
            await fabric.serve(agent, "chat@fame.fabric")
            replicas[key] = (agent, own)
        client = await stack.enter_async_context(FameFabric.create(settings=settings))
        remote = RemoteAgent("chat@fame.fabric", fabric=client)
        await remote.start_task(id="conv", payload={"system_prompt": "s"})
        session = RemoteChatSession(remote, "conv", timeout=20.0)
        assert await session.ask("one") == "echo(2): one"

        llm.enqueue(Delay(10.0))
        turn = asyncio.ensure_future(session.ask("two"))
        await asyncio.to_thread(llm.wait_for_requests, 2, 5.0)
        serving = llm.requests[-1].headers["authorization"].removeprefix("Bearer ")
        loop = asyncio.get_running_loop()
        left_at = loop.time()
        await replicas[serving][1].aclose()  # the replica serving the turn leaves mid-turn
        reply = await asyncio.wait_for(turn, 15.0)

        assert reply == "echo(4): two"
        assert loop.time() - left_at < 5.0  # answered by the other replica, not after the delay
        survivor = replicas["key-b" if serving == "key-a" else "key-a"][0]
        state = await survivor.store.load("conv")
        assert state is not None
        assert [m.content for m in state.history] == ["one", "echo(2): one", "two", "echo(4): two"]


async def test_a_stream_cut_by_a_departing_replica_goes_on_from_another_without_repeating(
    sentinel: Sentinel, tmp_path: Path
) -> None:
    settings = replace(
        FabricSettings(),
        admission_url=f"ws://127.0.0.1:{sentinel.port}/fame/v1/attach/ws/downstream",
        call_timeout=20.0,
    )
    database = str(tmp_path / "conversations.db")
    with OpenAIStubServer(token_delay=0.02) as llm:
        async with AsyncExitStack() as stack:
            replicas: dict[str, tuple[ChatAgent, AsyncExitStack]] = {}
            for key in ("key-a", "key-b"):
                model = OpenAIChatModel(
                    model="m", api_key=key, base_url=llm.url, timeout=10.0, max_retries=0
                )
                stack.push_async_callback(model.aclose)
                agent = ChatAgent(
                    model=model,
                    store=await stack.enter_async_context(SQLiteConversationStore(database)),
                )
                own = await stack.enter_async_context(AsyncExitStack())
                fabric = await own.enter_async_context(FameFabric.create(settings=settings))
                await fabric.serve(agent, "chat@fame.fabric")
                replicas[key] = (agent, own)
            client = await stack.enter_async_context(FameFabric.create(settings=settings))
            remote = RemoteAgent("chat@fame.fabric", fabric=client)
            await remote.start_task(id="conv", payload={"system_prompt": "s"})
            session = RemoteChatSession(remote, "conv", timeout=20.0)

            question = " ".join(f"w{i}" for i in range(60))
            pieces: list[str] = []
            async with aclosing(session.ask_streaming(question)) as stream:
                async for piece in stream:
                    pieces.append(piece)
                    if len(pieces) == 5:  # the replica writing this reply leaves mid-reply
                        serving = llm.requests[-1].headers["authorization"].removeprefix("Bearer ")
                        await replicas[serving][1].aclose()

            assert "".join(pieces) == f"echo(2): {question}"  # whole, and nothing twice
            assert len(llm.requests) == 2  # the turn was asked again, of the other replica
            survivor = replicas["key-b" if serving == "key-a" else "key-a"][0]
            state = await survivor.store.load("conv")
            assert state is not None
            assert [m.content for m in state.history] == [question, f"echo(2): {question}"]
