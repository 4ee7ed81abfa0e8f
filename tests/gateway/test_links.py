"""The users' link pool: one link per token, bounded, idle links closed, busy ones kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

import pytest

from famefabric.errors import AttachRefused
from famefabric.gateway.errors import GatewayError
from famefabric.gateway.links import LinkPool, token_key
from famefabric.node import LinkState, Node


class FakeNode:
    """Stands in for an attached node; records whether it was closed."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.closed = False
        self.state = LinkState.READY


class Opener:
    def __init__(self, refuse: set[str] | None = None) -> None:
        self.opened: list[FakeNode] = []
        self.refuse = refuse or set()

    def __call__(self, token: str | None) -> AbstractAsyncContextManager[Node]:
        @asynccontextmanager
        async def link() -> AsyncIterator[Any]:
            if token in self.refuse:
                raise AttachRefused("refused", status=401, reason="bad signature")
            node = FakeNode(token)
            self.opened.append(node)
            try:
                yield node
            finally:
                node.closed = True

        return cast(AbstractAsyncContextManager[Node], link())


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_one_link_per_token_reused_and_keyed_by_digest() -> None:
    opener = Opener()
    pool = LinkPool(opener, max_links=4, idle_seconds=60)
    async with pool.link("token-a") as first, pool.link("token-a") as again:
        assert first is again
    async with pool.link("token-b") as other:
        assert other is not first
    assert len(opener.opened) == 2
    assert "token-a" not in token_key("token-a")
    await pool.aclose()
    assert all(node.closed for node in opener.opened)


async def test_the_least_recently_used_idle_link_makes_room_and_busy_links_are_kept() -> None:
    opener = Opener()
    pool = LinkPool(opener, max_links=2, idle_seconds=60)
    async with pool.link("a"):
        pass
    async with pool.link("b") as b:
        async with pool.link("c"):  # evicts "a", the idle one
            pass
        await asyncio.sleep(0)
        assert opener.opened[0].closed and not b.closed  # type: ignore[attr-defined]
        async with pool.link("c"):
            with pytest.raises(GatewayError) as info:
                async with pool.link("d"):
                    pass
    assert info.value.status == 429
    await pool.aclose()


async def test_idle_links_close_and_refused_tokens_are_401_and_not_kept() -> None:
    clock = Clock()
    opener = Opener(refuse={"forged"})
    pool = LinkPool(opener, max_links=4, idle_seconds=30, clock=clock)
    async with pool.link("a"):
        pass
    clock.now = 20
    assert pool.sweep() == 0
    clock.now = 31
    assert pool.sweep() == 1
    await asyncio.sleep(0)
    assert opener.opened[0].closed
    with pytest.raises(GatewayError) as info:
        async with pool.link("forged"):
            pass
    assert info.value.status == 401
    assert len(pool) == 0
    await pool.aclose()


async def test_a_link_the_sentinel_ended_is_attached_anew() -> None:
    opener = Opener()
    pool = LinkPool(opener, max_links=4, idle_seconds=60)
    async with pool.link("a") as first:
        pass
    first.state = LinkState.GAVE_UP  # type: ignore[misc]
    async with pool.link("a") as second:
        assert second is not first
    await pool.aclose()
