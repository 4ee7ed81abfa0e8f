"""The chat driver: turns through the fabric, and the same requests made directly.

``python -m benchmarks.chat_client --stub-url URL [--address chat@fame.fabric]``
reads ``FAME_DIRECT_ADMISSION_URL``, attaches, waits until the chat agent
answers ``start_task`` and prints ``READY``. Commands (see
:mod:`benchmarks.driver`) measure both modes, ``fabric`` and ``direct``,
alternating between them so that the machine's noise falls on both alike:

* ``turn_latency`` (``duration``): sequential turns of one conversation per
  mode, turn by turn alternately;
* ``turn_throughput`` (``concurrency``, ``duration``, ``slices``, ``modes``):
  that many conversations at once, each one turn after the other, in
  alternating slices;
* ``ttft`` (``duration``): sequential streamed turns, alternately; the time to
  the first non-empty piece, and to the end of the reply;
* ``fabric_latency`` (``duration``): sequential fabric turns only.

``fabric`` turns go through :class:`famefabric.chat.client.RemoteChatSession`,
exactly as ``fame chat`` sends them (``run_turn``/``stream_turn`` with a turn
id). ``direct`` turns send the same Chat Completions requests with the same
``openai.AsyncOpenAI`` client settings as the agent's model, keeping the same
history window client-side: ``[system] + last 20 messages + [user]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai

from benchmarks import driver
from famefabric import FameFabric, NoRoute
from famefabric.agent.a2a import make_task_params
from famefabric.agent.proxy import RemoteAgent
from famefabric.chat.client import RemoteChatSession
from famefabric.chat.conversation import DEFAULT_MAX_HISTORY_LENGTH, DEFAULT_SYSTEM_PROMPT
from famefabric.errors import OperationTimeout
from famefabric.protocol.ids import new_id

QUESTION = "How does a sentinel route a call to an agent? Answer in one sentence."
MODEL = "stub-model"
READY_TIMEOUT = 60.0


class DirectConversation:
    """One conversation held client-side, asking the LLM server directly."""

    def __init__(self, client: openai.AsyncOpenAI, model: str) -> None:
        self._client = client
        self._model = model
        self._history: list[dict[str, str]] = []
        self._max = 2 * DEFAULT_MAX_HISTORY_LENGTH

    def _messages(self, question: str) -> list[Any]:
        return [
            {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
            *self._history[-self._max :],
            {"role": "user", "content": question},
        ]

    def _remember(self, question: str, reply: str) -> None:
        self._history += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": reply},
        ]
        del self._history[: -self._max]

    async def ask(self, question: str) -> str:
        """One non-streamed turn."""
        completion = await self._client.chat.completions.create(
            model=self._model, messages=self._messages(question)
        )
        reply = completion.choices[0].message.content or ""
        self._remember(question, reply)
        return reply

    async def ask_streaming(self, question: str) -> AsyncIterator[str]:
        """One streamed turn, yielding non-empty pieces."""
        stream = await self._client.chat.completions.create(
            model=self._model, messages=self._messages(question), stream=True
        )
        pieces: list[str] = []
        async with stream:
            async for chunk in stream:
                piece = chunk.choices[0].delta.content if chunk.choices else None
                if piece:
                    pieces.append(piece)
                    yield piece
        self._remember(question, "".join(pieces))


Conversation = RemoteChatSession | DirectConversation


class Chats:
    """Opens conversations of either mode."""

    def __init__(self, agent: RemoteAgent, client: openai.AsyncOpenAI, model: str) -> None:
        self.agent = agent
        self.client = client
        self.model = model
        self._opened: list[str] = []

    async def open(self, mode: str) -> Conversation:
        """Start a conversation: on the agent (``fabric``) or client-side (``direct``)."""
        if mode == "direct":
            return DirectConversation(self.client, self.model)
        if mode != "fabric":
            raise ValueError(f"mode must be fabric or direct, not {mode!r}")
        conversation_id = new_id()
        params = make_task_params(
            id=conversation_id, payload={}, history_length=DEFAULT_MAX_HISTORY_LENGTH
        )
        await self.agent.start_task(params=params, timeout=10.0)
        self._opened.append(conversation_id)
        return RemoteChatSession(self.agent, conversation_id, timeout=30.0)

    async def close_all(self) -> None:
        """End the conversations opened on the agent."""
        opened, self._opened = self._opened, []
        for conversation_id in opened:
            await self.agent.end_conversation(conversation_id, _timeout=10.0)


async def _first_piece(conversation: Conversation, question: str) -> tuple[float, float]:
    """Stream one turn; return (seconds to the first piece, seconds to the end)."""
    started = time.perf_counter()
    first = 0.0
    async for _piece in conversation.ask_streaming(question):
        if not first:
            first = time.perf_counter() - started
    return first, time.perf_counter() - started


MODES = ("fabric", "direct")


def handlers(chats: Chats) -> dict[str, driver.Handler]:
    """The driver commands; each alternates the two modes so that noise hits both alike."""

    async def turn_latency(command: dict[str, Any]) -> dict[str, Any]:
        conversations = {mode: await chats.open(mode) for mode in MODES}
        samples: dict[str, list[float]] = {mode: [] for mode in MODES}
        try:
            for _ in range(10):
                for conversation in conversations.values():
                    await conversation.ask(QUESTION)
            end = time.perf_counter() + float(command["duration"])
            turn = 0
            while time.perf_counter() < end:
                turn += 1
                for mode in MODES if turn % 2 else reversed(MODES):
                    started = time.perf_counter()
                    await conversations[mode].ask(QUESTION)
                    samples[mode].append(time.perf_counter() - started)
        finally:
            await chats.close_all()
        return {mode: driver.summarize(samples[mode]) for mode in MODES}

    async def turn_throughput(command: dict[str, Any]) -> dict[str, Any]:
        concurrency = int(command["concurrency"])
        slices = int(command.get("slices", 4))
        piece = float(command["duration"]) / slices
        modes = tuple(command.get("modes", MODES))
        pools = {mode: [await chats.open(mode) for _ in range(concurrency)] for mode in modes}
        totals = {mode: {"calls": 0, "secs": 0.0, "errors": 0} for mode in modes}

        def turn(pool: list[Conversation]) -> driver.Call:
            async def call() -> object:
                # A worker takes a conversation and gives it back: one turn at a time each.
                conversation = pool.pop()
                try:
                    return await conversation.ask(QUESTION)
                finally:
                    pool.append(conversation)

            return call

        try:
            for index in range(slices):
                for mode in modes if index % 2 else tuple(reversed(modes)):
                    result = await driver.measure_throughput(
                        turn(pools[mode]), inflight=concurrency, duration=piece, warmup=0.1
                    )
                    totals[mode]["calls"] += result["calls"]
                    totals[mode]["secs"] += result["secs"]
                    totals[mode]["errors"] += result.get("errors", 0)
        finally:
            await chats.close_all()
        return {
            mode: {
                **total,
                "concurrency": concurrency,
                "rate": total["calls"] / total["secs"] if total["secs"] else 0.0,
            }
            for mode, total in totals.items()
        }

    async def ttft(command: dict[str, Any]) -> dict[str, Any]:
        conversations = {mode: await chats.open(mode) for mode in MODES}
        firsts: dict[str, list[float]] = {mode: [] for mode in MODES}
        wholes: dict[str, list[float]] = {mode: [] for mode in MODES}
        try:
            for _ in range(10):
                for conversation in conversations.values():
                    await _first_piece(conversation, QUESTION)
            end = time.perf_counter() + float(command["duration"])
            turn = 0
            while time.perf_counter() < end:
                turn += 1
                for mode in MODES if turn % 2 else reversed(MODES):
                    first, whole = await _first_piece(conversations[mode], QUESTION)
                    firsts[mode].append(first)
                    wholes[mode].append(whole)
        finally:
            await chats.close_all()
        return {
            mode: {
                "first_piece": driver.summarize(firsts[mode]),
                "whole_reply": driver.summarize(wholes[mode]),
            }
            for mode in MODES
        }

    async def fabric_latency(command: dict[str, Any]) -> dict[str, Any]:
        conversation = await chats.open("fabric")
        try:
            return await driver.measure_latency(
                lambda: conversation.ask(QUESTION), duration=float(command["duration"]), warmup=10
            )
        finally:
            await chats.close_all()

    return {
        "turn_latency": turn_latency,
        "turn_throughput": turn_throughput,
        "ttft": ttft,
        "fabric_latency": fabric_latency,
    }


async def wait_for_agent(
    agent: RemoteAgent, limit: float = READY_TIMEOUT, poll: float = 0.005
) -> float:
    """Start (and end) conversations until the agent answers; return when it did (monotonic)."""
    deadline = time.monotonic() + limit
    while True:
        conversation_id = new_id()
        try:
            await agent.start_task(
                params=make_task_params(id=conversation_id, payload={}), timeout=5.0
            )
        except (NoRoute, OperationTimeout):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(poll)
            continue
        answered = time.monotonic()
        await agent.end_conversation(conversation_id, _timeout=5.0)
        return answered


@asynccontextmanager
async def _setup(
    address: str, stub_url: str, model: str
) -> AsyncIterator[tuple[dict[str, driver.Handler], dict[str, Any]]]:
    client = openai.AsyncOpenAI(api_key="bench", base_url=stub_url, timeout=60.0, max_retries=2)
    try:
        async with FameFabric.create() as fabric:
            agent = RemoteAgent(address, fabric=fabric)
            await wait_for_agent(agent)
            chats = Chats(agent, client, model)
            # One turn each way, so that both paths have warm connections.
            for mode in ("fabric", "direct"):
                conversation = await chats.open(mode)
                await conversation.ask(QUESTION)
            await chats.close_all()
            yield handlers(chats), {"address": address}
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    """Serve driver commands."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chat_client")
    parser.add_argument("--address", default="chat@fame.fabric")
    parser.add_argument("--stub-url", required=True)
    parser.add_argument("--model", default=MODEL)
    args = parser.parse_args(argv)
    return asyncio.run(driver.serve(lambda: _setup(args.address, args.stub_url, args.model)))


if __name__ == "__main__":
    sys.exit(main())
