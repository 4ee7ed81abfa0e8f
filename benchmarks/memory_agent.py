"""A chat agent process filled with conversations, to measure its memory.

``python -m benchmarks.memory_agent --store URL --conversations N``

Builds what ``fame agent chat`` builds (its store from the URL and a
:class:`~famefabric.chat.ChatAgent`), with a model that answers at once with
a fresh ~200-character reply. It measures its own RSS, fills the store with N
conversations of ``2 x turns`` messages of ``chars`` characters, collects
garbage, measures RSS again and prints one JSON line. Two ways to fill:

* ``--fill turns``: every conversation through the agent's own
  ``start_task`` and ``turns`` x ``run_turn`` (each with a turn id, as
  ``fame chat`` sends them): exactly what serving them leaves in memory;
* ``--fill bulk``: ``store.create`` with the whole history at once, then
  ``get_conversation`` on every conversation and ``run_turn`` on
  ``--sample-turns`` of them. For SQLite, where one turn costs about 3 ms
  (a few transactions), 100,000 turns would take minutes.

The fabric is not involved: 100,000 turns through sockets would take minutes
and measure the fabric's CPU, not the store's memory.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.procs import peak_rss_bytes, rss_bytes
from famefabric.agent.a2a import make_task_params
from famefabric.chat import ChatAgent, ChatMessage, ConversationState, open_store
from famefabric.protocol.ids import new_id


def text(prefix: str, chars: int) -> str:
    """A fresh string of exactly ``chars`` characters starting with ``prefix``."""
    filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit " * (chars // 56 + 1)
    return (prefix + " " + filler)[:chars]


class InstantModel:
    """A chat model answering at once with a new reply of ``chars`` characters."""

    def __init__(self, chars: int) -> None:
        self.chars = chars
        self.calls = 0

    async def complete(self, messages: Sequence[ChatMessage]) -> str:
        """Return a fresh reply."""
        self.calls += 1
        return text(f"reply {self.calls}", self.chars)

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncGenerator[str, None]:
        """Yield a fresh reply in one piece."""
        yield await self.complete(messages)

    async def aclose(self) -> None:
        """Nothing to release."""

    def describe(self) -> str:
        """For logs."""
        return "instant model"


def _db_bytes(url: str) -> int:
    if not url.startswith("sqlite:///"):
        return 0
    path = Path(url.removeprefix("sqlite:///"))
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


async def fill(
    url: str,
    conversations: int,
    turns: int,
    chars: int,
    concurrency: int,
    how: str,
    sample_turns: int,
) -> dict[str, Any]:
    """Fill an agent's store and return the memory figures."""
    model = InstantModel(chars)
    async with open_store(url) as store:
        agent = ChatAgent(model=model, store=store, max_history_length=turns)
        # Warm up every code path (and open the database) before the baseline.
        warm = new_id()
        await agent.start_task(make_task_params(id=warm, payload={}, history_length=turns))
        await agent.run_turn(warm, text("warm", chars), turn_id=new_id())
        await agent.end_conversation(warm)
        gc.collect()
        before = rss_bytes(os.getpid())
        pid = os.getpid()
        raw = 0
        semaphore = asyncio.Semaphore(concurrency)

        async def conversation(index: int) -> int:
            async with semaphore:
                conversation_id = new_id()
                await agent.start_task(
                    make_task_params(id=conversation_id, payload={}, history_length=turns)
                )
                stored = 0
                for turn in range(turns):
                    question = text(f"question {index}.{turn}", chars)
                    reply = await agent.run_turn(conversation_id, question, turn_id=new_id())
                    stored += len(question.encode()) + len(reply.encode())
                return stored

        async def bulk(index: int) -> int:
            async with semaphore:
                conversation_id = ids[index]
                history = tuple(
                    ChatMessage(
                        "user" if k % 2 == 0 else "assistant", text(f"message {index}.{k}", chars)
                    )
                    for k in range(2 * turns)
                )
                state = ConversationState(
                    conversation_id=conversation_id, max_history_length=turns, history=history
                )
                await store.create(state)
                return sum(len(m.content.encode()) for m in history)

        async def visit(index: int) -> None:
            async with semaphore:
                await agent.get_conversation(ids[index])
                if index < sample_turns:
                    await agent.run_turn(
                        ids[index], text(f"question {index}", chars), turn_id=new_id()
                    )

        started = time.monotonic()
        if how == "turns":
            raw = sum(await asyncio.gather(*(conversation(i) for i in range(conversations))))
        else:
            ids = [new_id() for _ in range(conversations)]
            raw = sum(await asyncio.gather(*(bulk(i) for i in range(conversations))))
            await asyncio.gather(*(visit(i) for i in range(conversations)))
        secs = time.monotonic() - started
        gc.collect()
        after = rss_bytes(pid)
        sample = await store.load((await store.list_ids(limit=1))[0])
        assert sample is not None and len(sample.history) == 2 * turns, (
            "conversations were not stored whole"
        )
        return {
            "store": url.split(":", 1)[0],
            "fill": how,
            "sample_turns": sample_turns if how == "bulk" else conversations * turns,
            "conversations": conversations,
            "messages_per_conversation": 2 * turns,
            "chars": chars,
            "raw_text_bytes": raw,
            "rss_before_bytes": before,
            "rss_after_bytes": after,
            "rss_growth_bytes": after - before,
            "peak_rss_bytes": peak_rss_bytes(pid),
            "db_bytes": _db_bytes(url),
            "fill_secs": secs,
            "fill_per_sec": conversations / secs if secs else 0.0,
        }


def main(argv: list[str] | None = None) -> int:
    """Fill, measure, print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_agent")
    parser.add_argument("--store", required=True, help="memory:// or sqlite:///path.db")
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument(
        "--turns", type=int, default=10, help="turns per conversation (2 messages each)"
    )
    parser.add_argument("--chars", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--fill", choices=["turns", "bulk"], default="turns")
    parser.add_argument(
        "--sample-turns",
        type=int,
        default=1000,
        help="with --fill bulk: conversations given one more turn",
    )
    args = parser.parse_args(argv)
    result = asyncio.run(
        fill(
            args.store,
            args.conversations,
            args.turns,
            args.chars,
            args.concurrency,
            args.fill,
            args.sample_turns,
        )
    )
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
