"""The agent SDK over a real sentinel on loopback: calls, streams, errors, A2A, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from famefabric import (
    Agent,
    BaseAgent,
    FameFabric,
    NoRoute,
    OperationError,
    OperationTimeout,
    RemoteError,
    Sentinel,
    TaskState,
    operation,
)
from famefabric.settings import FabricSettings

pytestmark = pytest.mark.timeout(30)


class Calc(BaseAgent):
    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    @operation
    async def add(self, x: int, y: int) -> int:
        return x + y

    @operation
    async def nothing(self) -> None:
        return None

    @operation
    async def fail(self, text: str) -> None:
        raise ValueError(text)

    @operation
    async def refuse(self) -> None:
        raise OperationError("not today", code=-32050, data={"code": "refused"})

    @operation
    async def count(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @operation
    async def count_then_fail(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i
        raise ValueError(f"failed after {n}")

    @operation
    async def wait(self, seconds: float) -> str:
        self.started.set()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return "done"

    async def run_task(self, payload: object, id: str | None) -> object:
        return {"got": payload}


@pytest.fixture
async def sentinel() -> AsyncIterator[Sentinel]:
    async with Sentinel(host="127.0.0.1", port=0, system_id="testsentinel0001") as running:
        yield running


def settings_for(sentinel: Sentinel) -> FabricSettings:
    return replace(
        FabricSettings(),
        admission_url=f"ws://127.0.0.1:{sentinel.port}/fame/v1/attach/ws/downstream",
        call_timeout=5.0,
    )


@pytest.fixture
async def calc(sentinel: Sentinel) -> AsyncIterator[Calc]:
    agent = Calc()
    async with FameFabric.create(settings=settings_for(sentinel)) as fabric:
        await fabric.serve(agent, "calc@fame.fabric")
        yield agent


@pytest.fixture
async def client(sentinel: Sentinel, calc: Calc) -> AsyncIterator[FameFabric]:
    async with FameFabric.create(settings=settings_for(sentinel)) as fabric:
        yield fabric


async def test_unary_operations_return_their_results(client: FameFabric) -> None:
    proxy = Agent.remote_by_address("calc@fame.fabric")
    assert await proxy.add(3, 4) == 7
    assert await proxy.add(x=1, y=2) == 3
    assert await proxy.nothing() is None


async def test_streaming_operation_yields_items_then_ends(client: FameFabric) -> None:
    proxy = Agent.remote_by_address("calc@fame.fabric")
    assert [i async for i in proxy.count(4)] == [0, 1, 2, 3]
    assert [i async for i in proxy.count(0)] == []


async def test_stream_error_arrives_after_the_items(client: FameFabric) -> None:
    proxy = Agent.remote_by_address("calc@fame.fabric")
    items: list[int] = []
    with pytest.raises(RemoteError) as info:
        async for item in proxy.count_then_fail(2):
            items.append(item)
    assert items == [0, 1]
    assert (info.value.code, info.value.message) == (-32603, "failed after 2")


async def test_operation_errors_keep_code_message_and_data(client: FameFabric) -> None:
    proxy = Agent.remote_by_address("calc@fame.fabric")
    with pytest.raises(RemoteError) as info:
        await proxy.fail("kaboom")
    assert (info.value.code, info.value.message) == (-32603, "kaboom")
    with pytest.raises(RemoteError) as info:
        await proxy.refuse()
    assert (info.value.code, info.value.message, info.value.data) == (
        -32050,
        "not today",
        {"code": "refused"},
    )


async def test_unknown_method_and_bad_params_are_named(client: FameFabric) -> None:
    proxy = Agent.remote_by_address("calc@fame.fabric")
    with pytest.raises(RemoteError) as info:
        await proxy.no_such_method()
    assert (info.value.code, info.value.message) == (-32601, "Method not found")
    with pytest.raises(RemoteError) as info:
        await proxy.add(1)
    assert info.value.code == -32602
    assert info.value.message == "invalid params for Calc.add: missing a required argument: 'y'"


async def test_typed_proxy_rejects_unknown_operations_locally(client: FameFabric) -> None:
    proxy = Calc.remote_by_address("calc@fame.fabric")
    assert await proxy.add(2, 2) == 4
    with pytest.raises(
        AttributeError, match="Calc has no operation 'ad'; its operations: add, count"
    ):
        proxy.ad(1, 2)  # type: ignore[attr-defined]


async def test_unknown_address_fails_at_once_naming_it(client: FameFabric) -> None:
    proxy = Agent.remote_by_address("nobody@fame.fabric")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NoRoute, match=r"nobody@fame\.fabric"):
        await proxy.echo("hi")
    with pytest.raises(NoRoute, match=r"nobody@fame\.fabric"):
        async for _ in proxy.count(3):
            pass
    assert loop.time() - started < 2.0


async def test_calls_run_concurrently_on_one_agent(client: FameFabric, calc: Calc) -> None:
    proxy = Agent.remote_by_address("calc@fame.fabric")
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(*(proxy.wait(0.3) for _ in range(10)))
    assert results == ["done"] * 10
    assert loop.time() - started < 1.5  # one at a time would take 3 s


async def test_caller_timeout_cancels_the_handler(client: FameFabric, calc: Calc) -> None:
    proxy = Agent.remote_by_address("calc@fame.fabric")
    with pytest.raises(OperationTimeout):
        await proxy.wait(10, _timeout=0.3)
    await asyncio.wait_for(calc.cancelled.wait(), 2.0)


async def test_abandoned_call_cancels_the_handler(client: FameFabric, calc: Calc) -> None:
    proxy = Agent.remote_by_address("calc@fame.fabric")
    call = asyncio.ensure_future(proxy.wait(10))
    await asyncio.wait_for(calc.started.wait(), 2.0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.wait_for(calc.cancelled.wait(), 2.0)


async def test_run_task_completes_with_the_result(client: FameFabric) -> None:
    proxy = Agent.remote_by_address("calc@fame.fabric")
    assert await proxy.run_task({"a": 1}) == {"got": {"a": 1}}
    task = await proxy.start_task(id="t1", payload="text")
    assert task.status.state == TaskState.COMPLETED
    again = await proxy.get_task_status(id="t1")
    assert again.id == "t1"


async def test_subscription_streams_status_and_unsubscribe_succeeds(client: FameFabric) -> None:
    proxy = Agent.remote_by_address("calc@fame.fabric")
    events = [event async for event in proxy.subscribe_to_task_updates(id="t2", payload={"b": 2})]
    assert [e.status.state for e in events] == [TaskState.COMPLETED]  # type: ignore[union-attr]


async def test_cancel_of_a_plain_agent_task_is_refused(client: FameFabric) -> None:
    proxy = Agent.remote_by_address("calc@fame.fabric")
    with pytest.raises(RemoteError) as info:
        await proxy.cancel_task(id="t1")
    assert (info.value.code, info.value.message) == (-32002, "Task cannot be canceled")


async def test_an_in_process_fabric_needs_no_sentinel_process() -> None:
    settings = replace(FabricSettings(), call_timeout=5.0)
    async with FameFabric.create(in_process=True, settings=settings) as fabric:
        await fabric.serve(Calc(), "calc@fame.fabric")
        proxy = Agent.remote_by_address("calc@fame.fabric")
        assert await proxy.add(20, 22) == 42
        assert [i async for i in proxy.count(3)] == [0, 1, 2]
        with pytest.raises(NoRoute):
            await Agent.remote_by_address("nobody@fame.fabric").add(1, 2)


async def test_traffic_logs_nothing_at_info_level(client: FameFabric) -> None:
    import logging

    created: list[logging.LogRecord] = []
    factory = logging.getLogRecordFactory()

    def counting(*args: object, **kwargs: object) -> logging.LogRecord:
        record = factory(*args, **kwargs)  # type: ignore[arg-type]
        if record.name.startswith("famefabric"):
            created.append(record)
        return record

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    logging.setLogRecordFactory(counting)
    try:
        proxy = Agent.remote_by_address("calc@fame.fabric")
        for n in range(300):
            assert await proxy.add(n, 1) == n + 1
        assert [i async for i in proxy.count(50)] == list(range(50))
    finally:
        logging.setLogRecordFactory(factory)
        root.setLevel(level)
    assert [r.getMessage() for r in created] == []


async def test_an_agent_skips_work_whose_caller_already_gave_up(
    client: FameFabric, calc: Calc
) -> None:
    import time

    past = int(time.time() * 1000) - 1000
    with pytest.raises(OperationTimeout):
        await client.node.call(
            "calc@fame.fabric",
            "wait",
            {"args": [0.01], "kwargs": {}},
            timeout=0.5,
            meta={"deadline": past},
        )
    assert not calc.started.is_set()
    assert await Agent.remote_by_address("calc@fame.fabric").wait(0.01) == "done"
