"""The caller context (famefabric.agent.caller)."""

from __future__ import annotations

import asyncio

from famefabric.agent import Caller, current_caller
from famefabric.agent.caller import ANONYMOUS, caller_from_meta, reset_caller, set_caller


def test_meta_without_subject_is_anonymous() -> None:
    assert caller_from_meta(None) is ANONYMOUS
    assert caller_from_meta({}) is ANONYMOUS
    assert caller_from_meta({"subject": ""}) is ANONYMOUS
    assert caller_from_meta({"subject": 3, "admin": True}) is ANONYMOUS


def test_meta_subject_and_admin() -> None:
    assert caller_from_meta({"subject": "alice"}) == Caller("alice", admin=False)
    assert caller_from_meta({"subject": "root", "admin": True}) == Caller("root", admin=True)
    assert caller_from_meta({"subject": "bob", "admin": "yes"}) == Caller("bob", admin=False)
    assert Caller("alice").is_authenticated and not ANONYMOUS.is_authenticated


async def test_caller_is_per_task() -> None:
    seen: dict[str, Caller] = {}

    async def handle(name: str) -> None:
        token = set_caller(Caller(name))
        try:
            await asyncio.sleep(0)
            seen[name] = current_caller()
        finally:
            reset_caller(token)

    await asyncio.gather(handle("a"), handle("b"))
    assert seen == {"a": Caller("a"), "b": Caller("b")}
    assert current_caller() is ANONYMOUS
