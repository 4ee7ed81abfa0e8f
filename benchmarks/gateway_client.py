"""The gateway driver: streamed replies through ``fame gateway`` (SSE), and the same directly.

``python -m benchmarks.gateway_client --gateway-url URL --stub-url URL`` waits
until the gateway answers a streamed turn and prints ``READY``. Commands (see
:mod:`benchmarks.driver`):

* ``ttft`` (``duration``): sequential streamed turns, alternating between
  ``gateway`` (``responses.create(stream=True, conversation=…)`` with the
  official ``openai`` SDK: HTTP, the gateway, the fabric, the chat agent, the
  stub), ``fabric`` (``stream_turn`` sent from a node in this process: the
  same path without HTTP and the gateway) and ``direct`` (a streamed Chat
  Completions request to the stub with the same SDK); the time to the first
  text delta, and to the end;
* ``create`` (``count``): ``conversations.create`` alternating between a bare
  one and one at the bounds' top (16 metadata pairs of 64/512 characters and 20
  initial items of 500 characters), each deleted after; the time of each kind,
  through the SDK and as plain JSON POSTs (urllib in a thread): the SDK's own transform of
  the parameters costs milliseconds of its own for 20 items;
* ``streams`` (``count``, ``model``): that many streamed responses opened at
  once through the gateway and held until each ends; how many completed whole,
  how many failed, and the most the gateway reported open at one time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai

from benchmarks import driver
from famefabric import FameFabric
from famefabric.agent.a2a import make_task_params
from famefabric.node import Node
from famefabric.protocol import jsonrpc
from famefabric.protocol.ids import new_id

QUESTION = "How does a sentinel route a call to an agent? Answer in one sentence."
CHAT = "chat@fame.fabric"
MODEL = "stub-model"
READY_TIMEOUT = 60.0


async def gateway_turn(client: openai.AsyncOpenAI, conversation: str) -> tuple[float, float]:
    """One streamed turn through the gateway: seconds to the first delta, and to the end."""
    started = time.perf_counter()
    first = 0.0
    stream = await client.responses.create(
        model=CHAT, input=QUESTION, conversation=conversation, stream=True
    )
    async for event in stream:
        if event.type == "response.output_text.delta" and not first and event.delta:
            first = time.perf_counter() - started
    return first, time.perf_counter() - started


async def direct_turn(client: openai.AsyncOpenAI, history: list[Any]) -> tuple[float, float]:
    """The same streamed request made directly to the stub LLM."""
    started = time.perf_counter()
    first = 0.0
    messages = [*history, {"role": "user", "content": QUESTION}]
    stream = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    pieces: list[str] = []
    async for chunk in stream:
        content = chunk.choices[0].delta.content if chunk.choices else None
        if content:
            if not first:
                first = time.perf_counter() - started
            pieces.append(content)
    history += [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": "".join(pieces)},
    ]
    del history[1:-20]
    return first, time.perf_counter() - started


async def fabric_turn(node: Node, conversation: str) -> tuple[float, float]:
    """The same turn sent straight to the chat agent over the fabric (``stream_turn``)."""
    started = time.perf_counter()
    first = 0.0
    params = jsonrpc.operation_params(
        (), {"conversation_id": conversation, "user_message": QUESTION, "turn_id": new_id()}
    )
    async with node.stream(CHAT, "stream_turn", params) as stream:
        async for piece in stream:
            if piece and not first:
                first = time.perf_counter() - started
    return first, time.perf_counter() - started


def open_streams(health_url: str) -> int:
    """The gateway's count of open streams."""
    with urllib.request.urlopen(health_url, timeout=2.0) as response:
        return int(json.loads(response.read())["streams"])


def handlers(
    gateway: openai.AsyncOpenAI, direct: openai.AsyncOpenAI, node: Node, health_url: str
) -> dict[str, driver.Handler]:
    """The driver's commands."""

    async def ttft(command: dict[str, Any]) -> dict[str, Any]:
        conversation = (await gateway.conversations.create()).id
        own = new_id()
        await node.call(CHAT, "tasks/send", make_task_params(id=own, payload={}).to_wire())
        history: list[Any] = [{"role": "system", "content": "You are a helpful assistant."}]
        modes = ("gateway", "fabric", "direct")
        firsts: dict[str, list[float]] = {mode: [] for mode in modes}
        wholes: dict[str, list[float]] = {mode: [] for mode in modes}

        async def one(mode: str) -> tuple[float, float]:
            if mode == "gateway":
                return await gateway_turn(gateway, conversation)
            if mode == "fabric":
                return await fabric_turn(node, own)
            return await direct_turn(direct, history)

        for _ in range(10):
            for mode in modes:
                await one(mode)
        end = time.perf_counter() + float(command["duration"])
        turn = 0
        while time.perf_counter() < end:
            turn += 1
            for mode in modes if turn % 2 else tuple(reversed(modes)):
                first, whole = await one(mode)
                firsts[mode].append(first)
                wholes[mode].append(whole)
        await gateway.conversations.delete(conversation)
        return {
            mode: {
                "first_piece": driver.summarize(firsts[mode]),
                "whole_reply": driver.summarize(wholes[mode]),
            }
            for mode in firsts
        }

    async def streams(command: dict[str, Any]) -> dict[str, Any]:
        count, model = int(command["count"]), str(command["model"])
        peak = 0
        done = asyncio.Event()

        async def watch() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, await asyncio.to_thread(open_streams, health_url))
                await asyncio.sleep(0.02)

        async def one(index: int) -> bool:
            text: list[str] = []
            stream = await gateway.responses.create(
                model=model, input=f"stream {index} please", stream=True
            )
            async for event in stream:
                if event.type == "response.output_text.delta":
                    text.append(event.delta)
            return "".join(text).endswith(f"stream {index} please")

        watcher = asyncio.create_task(watch())
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
        secs = time.perf_counter() - started
        done.set()
        await watcher
        errors = [repr(o)[:200] for o in outcomes if isinstance(o, BaseException)]
        return {
            "count": count,
            "completed": sum(1 for o in outcomes if o is True),
            "failed": len(errors),
            "first_errors": errors[:3],
            "peak_open": peak,
            "secs": secs,
        }

    async def create(command: dict[str, Any]) -> dict[str, Any]:
        pairs = {f"{i:02d}".ljust(64, "k"): "v" * 512 for i in range(16)}
        roles = ("user", "assistant")
        items: Any = [
            {"type": "message", "role": roles[i % 2], "content": f"{i} " + "x" * 498}
            for i in range(20)
        ]
        kinds = ("bare", "seeded", "bare_http", "seeded_http")
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        url = f"{gateway.base_url}conversations"

        def post(body: dict[str, Any]) -> str:
            request = urllib.request.Request(
                url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=60.0) as answer:
                return str(json.loads(answer.read())["id"])

        for index in range(int(command["count"])):
            for kind in kinds if index % 2 else tuple(reversed(kinds)):
                start = time.perf_counter()
                if kind == "bare":
                    made = (await gateway.conversations.create()).id
                elif kind == "seeded":
                    made = (await gateway.conversations.create(metadata=pairs, items=items)).id
                else:
                    body = {"metadata": pairs, "items": items} if kind == "seeded_http" else {}
                    made = await asyncio.to_thread(post, body)
                times[kind].append(time.perf_counter() - start)
                await gateway.conversations.delete(made)
        return {kind: driver.summarize(values) for kind, values in times.items()}

    return {"ttft": ttft, "create": create, "streams": streams}


@asynccontextmanager
async def _setup(
    gateway_url: str, stub_url: str
) -> AsyncIterator[tuple[dict[str, driver.Handler], dict[str, Any]]]:
    limits = {"timeout": 60.0, "max_retries": 0}
    gateway = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="bench", **limits)  # type: ignore[arg-type]
    direct = openai.AsyncOpenAI(base_url=stub_url, api_key="bench", **limits)  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                await gateway.responses.create(model=CHAT, input="ready?")
                break
            except (openai.APIConnectionError, openai.APIStatusError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        async with FameFabric.create() as fabric:
            yield (
                handlers(gateway, direct, fabric.node, f"{gateway_url}/healthz"),
                {"gateway": gateway_url},
            )
    finally:
        await gateway.close()
        await direct.close()


def main(argv: list[str] | None = None) -> int:
    """Serve driver commands."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gateway_client")
    parser.add_argument("--gateway-url", required=True)
    parser.add_argument("--stub-url", required=True)
    args = parser.parse_args(argv)
    return asyncio.run(driver.serve(lambda: _setup(args.gateway_url, args.stub_url)))


if __name__ == "__main__":
    sys.exit(main())
