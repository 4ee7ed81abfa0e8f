"""The store lease around a turn ends with the turn, whatever the store client does with a cancel.

The agent stops the lease's renewer when the turn ends. redis-py (8.2) now and
then finishes a command whose task was cancelled and returns its result as if
no cancel had come; a renewer that only a cancel could stop then went on
renewing the lease every ``LEASE_RENEW_EVERY`` seconds, the turn never
answered, and every later turn of the conversation found it "busy on another
replica". The store here does that on every renewal, so the test is
deterministic; the agent, sentinel, client and LLM (the stub through the real
``openai`` client) are real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest

from famefabric import Agent, FameFabric, Sentinel
from famefabric.chat import ChatAgent
from famefabric.chat import agent as chat_agent
from famefabric.chat.openai_model import OpenAIChatModel
from famefabric.chat.stores import MemoryConversationStore
from famefabric.settings import FabricSettings
from famefabric.testing import Delay, OpenAIStubServer

pytestmark = pytest.mark.timeout(30)

RENEW_EVERY = 0.02
"""Seconds between renewals in these tests: many renewals fall inside one turn."""
SLOW_LLM = 0.5
"""Seconds the stub LLM takes, so that the turn ends while a renewal is under way."""
ANSWER_WITHIN = 5.0
"""Seconds within which the turn must be answered (it takes about ``SLOW_LLM``)."""


class CancelSwallowingStore(MemoryConversationStore):
    """A store whose lease renewal waits until cancelled, then returns ``True`` as if not cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.holding: set[tuple[str, str]] = set()
        self.renewing = asyncio.Event()
        self.swallowed = 0

    async def acquire_lease(self, conversation_id: str, owner: str, ttl: float) -> bool:
        renewal = (conversation_id, owner) in self.holding
        acquired = await super().acquire_lease(conversation_id, owner, ttl)
        if acquired:
            self.holding.add((conversation_id, owner))
        if renewal:
            self.renewing.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.swallowed += 1  # and return normally, as the client library did
        return acquired

    async def release_lease(self, conversation_id: str, owner: str) -> None:
        self.holding.discard((conversation_id, owner))
        await super().release_lease(conversation_id, owner)


@pytest.fixture
def llm() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer() as server:
        yield server


@pytest.fixture
async def sentinel() -> AsyncIterator[Sentinel]:
    async with Sentinel(host="127.0.0.1", port=0, system_id="leasesentinel001") as running:
        yield running


async def test_a_turn_ends_and_gives_its_lease_back_when_the_store_swallows_the_renewers_cancel(
    sentinel: Sentinel, llm: OpenAIStubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_agent, "LEASE_RENEW_EVERY", RENEW_EVERY)
    store = CancelSwallowingStore()
    model = OpenAIChatModel(
        model="test-model", api_key="test", base_url=llm.url, timeout=10.0, max_retries=0
    )
    agent = ChatAgent(model=model, store=store, leases=True, replica_id="replica-a")
    settings = replace(
        FabricSettings(),
        admission_url=f"ws://127.0.0.1:{sentinel.port}/fame/v1/attach/ws/downstream",
        call_timeout=30.0,
    )
    try:
        async with FameFabric.create(settings=settings) as fabric:
            await fabric.serve(agent, "chat@fame.fabric")
            async with FameFabric.create(settings=settings) as caller:
                chat = Agent.remote_by_address("chat@fame.fabric", fabric=caller)
                await chat.start_task(id="c1", history_length=10)
                llm.enqueue(Delay(SLOW_LLM))
                async with asyncio.timeout(ANSWER_WITHIN):
                    reply = await chat.run_turn("c1", "hello")
                assert reply == "echo(2): hello"
                assert store.renewing.is_set(), "no renewal was under way: the test proved nothing"
                assert store.swallowed == 1
                assert store.holding == set()
                # The lease is free: another replica takes it at once, and the next turn runs.
                assert await store.acquire_lease("c1", "replica-b", 6.0)
                await store.release_lease("c1", "replica-b")
                async with asyncio.timeout(ANSWER_WITHIN):
                    assert await chat.run_turn("c1", "again") == "echo(4): again"
    finally:
        await model.aclose()
