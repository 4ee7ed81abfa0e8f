"""The agent server over a real sentinel: caller context, bounded handlers, error ids."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from famefabric import BaseAgent, FameFabric, RemoteError, Sentinel, operation
from famefabric.agent import Caller, current_caller
from famefabric.agent.caller import ANONYMOUS, caller_from_meta
from famefabric.agent.limits import BUSY, HandlerLimits
from famefabric.agent.server import AgentServer
from famefabric.protocol.frames import Data, Envelope
from famefabric.settings import FabricSettings

pytestmark = pytest.mark.timeout(30)

WAIT = 5.0


class Gate(BaseAgent):
    """Operations that report who called them, and one that waits for the test."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = asyncio.Event()
        self.entered = 0
        self.most_at_once = 0
        self._inside = 0

    @operation
    async def whoami(self) -> dict[str, Any]:
        await asyncio.sleep(0)  # the context survives a suspension
        caller = current_caller()
        return {"subject": caller.subject, "admin": caller.admin}

    @operation
    async def whoami_stream(self, n: int) -> AsyncIterator[dict[str, Any]]:
        for _ in range(n):
            caller = current_caller()
            yield {"subject": caller.subject, "admin": caller.admin}

    @operation
    async def hold(self, tag: int) -> int:
        self.entered += 1
        self._inside += 1
        self.most_at_once = max(self.most_at_once, self._inside)
        try:
            await self.opened.wait()
        finally:
            self._inside -= 1
        return tag

    @operation
    async def crash(self) -> None:
        raise KeyError("the secret ingredient")


@pytest.fixture
async def sentinel() -> AsyncIterator[Sentinel]:
    async with Sentinel(host="127.0.0.1", port=0, system_id="serversentinel01") as running:
        yield running


def settings_for(sentinel: Sentinel) -> FabricSettings:
    return replace(
        FabricSettings(),
        admission_url=f"ws://127.0.0.1:{sentinel.port}/fame/v1/attach/ws/downstream",
        call_timeout=WAIT,
    )


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for a state of the agent, polling its counters, with a deadline."""
    async with asyncio.timeout(WAIT):
        while not predicate():  # noqa: ASYNC110 - the server exposes counters, not events
            await asyncio.sleep(0.005)
    assert predicate(), what


def as_caller(value: Any) -> Caller:
    return Caller(subject=value["subject"], admin=value["admin"])


async def test_operations_see_the_caller_stamped_in_the_request_meta(sentinel: Sentinel) -> None:
    agent = Gate()
    delivered: list[dict[str, Any] | None] = []
    async with (
        FameFabric.create(settings=settings_for(sentinel)) as serving,
        FameFabric.create(settings=settings_for(sentinel)) as calling,
    ):
        await serving.serve(agent, "gate@fame.fabric")

        async def record(envelope: Envelope) -> None:
            delivered.append(envelope.meta)

        # A raw binding on the same node sees the meta exactly as the sentinel
        # delivers it (it may remove or stamp subject/admin).
        await serving.node.bind("probe@fame.fabric", record)
        meta: dict[str, Any] = {"subject": "alice", "admin": True}
        node = calling.node
        unary = await node.call("gate@fame.fabric", "whoami", {}, meta=dict(meta))
        items = [i async for i in node.stream("gate@fame.fabric", "whoami_stream", [2], meta=meta)]
        anonymous = await node.call("gate@fame.fabric", "whoami", {})
        await node.send(Envelope(to="probe@fame.fabric", frame=Data(payload=1), meta=meta))
        await until(lambda: bool(delivered), "the probe received its envelope")

    expected = caller_from_meta(delivered[0])
    assert as_caller(unary) == expected
    assert [as_caller(item) for item in items] == [expected, expected]
    assert as_caller(anonymous) == ANONYMOUS
    if delivered[0] and "subject" in delivered[0]:
        assert expected == Caller("alice", admin=True)  # passed through: the context says so
    assert current_caller() is ANONYMOUS  # nothing leaks into the caller's task


async def test_at_most_n_handlers_run_m_wait_and_the_rest_are_refused_at_once(
    sentinel: Sentinel,
) -> None:
    agent = Gate()
    async with (
        FameFabric.create(settings=settings_for(sentinel)) as serving,
        FameFabric.create(settings=settings_for(sentinel)) as calling,
    ):
        server = await serving.serve(
            agent, "gate@fame.fabric", limits=HandlerLimits(max_concurrency=2, max_queued=1)
        )
        node = calling.node
        admitted = [
            asyncio.ensure_future(node.call("gate@fame.fabric", "hold", [tag])) for tag in (1, 2)
        ]
        await until(lambda: agent.entered == 2, "two handlers run")
        queued = asyncio.ensure_future(node.call("gate@fame.fabric", "hold", [3]))
        await until(lambda: server.waiting == 1, "one request waits")

        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(3):
            with pytest.raises(RemoteError) as refused:
                await node.call("gate@fame.fabric", "hold", [4])
            assert refused.value.code == BUSY
            assert refused.value.data == {"code": "busy", "max_concurrency": 2, "max_queued": 1}
            assert "is busy" in refused.value.message and "retry later" in refused.value.message
        assert loop.time() - started < WAIT / 2  # answered at once, not after the others
        assert (server.running, server.waiting, agent.entered) == (2, 1, 2)

        agent.opened.set()
        assert await asyncio.gather(*admitted, queued) == [1, 2, 3]
        assert agent.most_at_once == 2
        assert (server.running, server.waiting) == (0, 0)
        assert await node.call("gate@fame.fabric", "hold", [5]) == 5  # not busy any more


async def test_a_queued_request_can_be_abandoned(sentinel: Sentinel) -> None:
    agent = Gate()
    async with (
        FameFabric.create(settings=settings_for(sentinel)) as serving,
        FameFabric.create(settings=settings_for(sentinel)) as calling,
    ):
        server = await serving.serve(
            agent, "gate@fame.fabric", limits=HandlerLimits(max_concurrency=1, max_queued=1)
        )
        node = calling.node
        running = asyncio.ensure_future(node.call("gate@fame.fabric", "hold", [1]))
        await until(lambda: agent.entered == 1, "one handler runs")
        waiting = asyncio.ensure_future(node.call("gate@fame.fabric", "hold", [2]))
        await until(lambda: server.waiting == 1, "one request waits")
        waiting.cancel()  # the caller gives up: the agent gets a cancel notice
        await until(lambda: server.waiting == 0, "the abandoned request left the line")
        agent.opened.set()
        assert await running == 1
        assert agent.entered == 1  # the abandoned request never ran


async def test_an_unexpected_failure_sends_its_error_id_in_data(
    sentinel: Sentinel, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        FameFabric.create(settings=settings_for(sentinel)) as serving,
        FameFabric.create(settings=settings_for(sentinel)) as calling,
    ):
        await serving.serve(Gate(), "gate@fame.fabric")
        with caplog.at_level(logging.ERROR, logger="famefabric.agent.server"):
            with pytest.raises(RemoteError) as failed:
                await calling.node.call("gate@fame.fabric", "crash", {})
    error = failed.value
    assert (error.code, error.message) == (-32603, "'the secret ingredient'")
    assert isinstance(error.data, dict) and error.error_id == error.data["error_id"]
    assert str(error).endswith(f"(error id {error.error_id})")
    logged = [r for r in caplog.records if error.error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback is under that id


def test_limits_are_read_from_the_environment_and_checked() -> None:
    limits = HandlerLimits.from_env(
        {"FAME_AGENT_MAX_CONCURRENCY": "3", "FAME_AGENT_MAX_QUEUED": "0"}
    )
    assert limits == HandlerLimits(max_concurrency=3, max_queued=0)
    assert HandlerLimits.from_env({}) == HandlerLimits(max_concurrency=64, max_queued=256)
    from famefabric.errors import ConfigurationError

    with pytest.raises(
        ConfigurationError, match="FAME_AGENT_MAX_CONCURRENCY='0' must be at least 1"
    ):
        HandlerLimits.from_env({"FAME_AGENT_MAX_CONCURRENCY": "0"})
    with pytest.raises(ConfigurationError, match="FAME_AGENT_MAX_QUEUED='lots' is not an integer"):
        HandlerLimits.from_env({"FAME_AGENT_MAX_QUEUED": "lots"})
    with pytest.raises(ConfigurationError, match="max_queued=-1 must not be negative"):
        HandlerLimits(max_concurrency=1, max_queued=-1)
    assert AgentServer  # the server takes these limits (see the tests above)


async def test_an_argument_the_operation_does_not_take_is_named_in_data(sentinel: Sentinel) -> None:
    async with (
        FameFabric.create(settings=settings_for(sentinel)) as serving,
        FameFabric.create(settings=settings_for(sentinel)) as calling,
    ):
        await serving.serve(Gate(), "gate@fame.fabric")
        params = {"args": [], "kwargs": {"turn_id": "t1", "zzz": 1}}
        with pytest.raises(RemoteError) as refused:
            await calling.node.call("gate@fame.fabric", "whoami", params)
        with pytest.raises(RemoteError) as missing:
            await calling.node.call("gate@fame.fabric", "hold", {"args": [], "kwargs": {}})
    assert refused.value.code == -32602
    assert refused.value.message.startswith("invalid params for Gate.whoami: ")
    assert refused.value.data == {"code": "invalid_params", "unexpected": ["turn_id", "zzz"]}
    assert (missing.value.code, missing.value.data) == (-32602, None)
