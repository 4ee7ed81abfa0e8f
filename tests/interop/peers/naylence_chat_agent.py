"""Run a Naylence reference agent with the stateful-conversation behaviour.

Usage::

    FAME_DIRECT_ADMISSION_URL=ws://127.0.0.1:8123/fame/v1/attach/ws/downstream \\
    OPENAI_BASE_URL=http://127.0.0.1:9000/v1 OPENAI_API_KEY=test MODEL_NAME=stub \\
        .venv-interop/bin/python tests/interop/peers/naylence_chat_agent.py [ADDRESS]

Serves ADDRESS (argv, else ``$AGENT_ADDRESS``, else ``chat@fame.fabric``) with
the behaviour of PROTOCOL.md section 11.3 (C-01):

* ``tasks/send`` (``start_task``) opens a conversation whose id is the task
  id, from a DataPart ``{"system_prompt": ...}``; the history window is the
  request's ``historyLength`` (else the DataPart's ``max_history_length``,
  else 10). It answers a ``working`` Task with one empty TextPart. A live id
  is refused with "Duplicate task: <id>".
* ``run_turn(conversation_id, user_message)`` sends the system prompt, the
  last messages of the history and the new user message to the
  chat-completions endpoint and returns the answer text;
  ``stream_turn(conversation_id, user_message)`` streams the answer pieces.
  An unknown conversation fails with "Invalid task: <id>".
* ``end_conversation(conversation_id)`` forgets the conversation (None).

The OpenAI client reads ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``; the model
is ``$MODEL_NAME`` (default ``gpt-4.1-mini``). When the address is bound it
prints ``READY chat id=<systemId> path=<assignedPath> addresses=<address>``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import _peer
from naylence.agent import (
    BaseAgent,
    Task,
    TaskSendParams,
    TaskState,
    configs,
    first_data_part,
    make_task,
)
from naylence.fame.core import FameFabric
from naylence.fame.service import operation
from openai import AsyncOpenAI

DEFAULT_ADDRESS = "chat@fame.fabric"
DEFAULT_MODEL = "gpt-4.1-mini"
DEFAULT_HISTORY_LENGTH = 10


@dataclass
class Conversation:
    """One conversation: its system prompt and the turns so far."""

    system_prompt: str
    history_length: int
    history: list[dict[str, str]] = field(default_factory=list)

    def prompt_with(self, user_message: str) -> list[dict[str, str]]:
        """Record the user message and return the messages to send to the model."""
        self.history.append({"role": "user", "content": user_message})
        del self.history[: -self.history_length]
        return [{"role": "system", "content": self.system_prompt}, *self.history]

    def record_answer(self, answer: str) -> None:
        """Record the assistant's answer."""
        self.history.append({"role": "assistant", "content": answer})
        del self.history[: -self.history_length]


class ChatAgent(BaseAgent):
    """Keeps one conversation per task id and relays turns to a chat model."""

    def __init__(self, client: AsyncOpenAI, model: str) -> None:
        super().__init__()
        self._client = client
        self._model = model
        self._conversations: dict[str, Conversation] = {}

    async def start_task(self, params: TaskSendParams) -> Task:
        """Open the conversation named by the task id."""
        if params.id in self._conversations:
            raise ValueError(f"Duplicate task: {params.id}")
        data = first_data_part(params.message) or {}
        system_prompt = data.get("system_prompt")
        if not isinstance(system_prompt, str):
            raise ValueError(f"task {params.id} needs a DataPart with a 'system_prompt' string")
        history_length = params.historyLength or data.get("max_history_length")
        self._conversations[params.id] = Conversation(
            system_prompt=system_prompt,
            history_length=int(history_length or DEFAULT_HISTORY_LENGTH),
        )
        return make_task(id=params.id, state=TaskState.WORKING, payload="")

    def _conversation(self, conversation_id: str) -> Conversation:
        conversation = self._conversations.get(conversation_id)
        if conversation is None:
            raise ValueError(f"Invalid task: {conversation_id}")
        return conversation

    @operation
    async def run_turn(self, conversation_id: str, user_message: str) -> str:
        """Send one user message and return the model's answer."""
        conversation = self._conversation(conversation_id)
        response = await self._client.chat.completions.create(
            model=self._model,
            messages=conversation.prompt_with(user_message),  # type: ignore[arg-type]
        )
        answer = response.choices[0].message.content or ""
        conversation.record_answer(answer)
        return answer

    @operation(streaming=True)
    async def stream_turn(self, conversation_id: str, user_message: str) -> AsyncIterator[str]:
        """Send one user message and yield the answer as the model streams it."""
        conversation = self._conversation(conversation_id)
        stream = await self._client.chat.completions.create(
            model=self._model,
            messages=conversation.prompt_with(user_message),  # type: ignore[arg-type]
            stream=True,
        )
        pieces: list[str] = []
        async for chunk in stream:
            if not chunk.choices:
                continue
            piece = chunk.choices[0].delta.content
            if piece:
                pieces.append(piece)
                yield piece
        conversation.record_answer("".join(pieces))

    @operation
    async def end_conversation(self, conversation_id: str) -> None:
        """Forget the conversation (unknown ids are ignored)."""
        self._conversations.pop(conversation_id, None)


async def main() -> int:
    """Attach, bind the chat address, announce readiness and serve until a stop signal."""
    address = (sys.argv[1] if len(sys.argv) > 1 else "") or os.environ.get(
        "AGENT_ADDRESS", DEFAULT_ADDRESS
    )
    _peer.require_admission_url("chat agent")
    if not os.environ.get("OPENAI_API_KEY"):
        print("chat agent: OPENAI_API_KEY is not set", file=sys.stderr)
        return 2
    client = AsyncOpenAI(timeout=20.0, max_retries=0)
    model = os.environ.get("MODEL_NAME") or DEFAULT_MODEL
    _peer.choose_node_id()
    stop = _peer.stop_event()
    async with FameFabric.create(root_config=configs.NODE_CONFIG) as fabric:
        bound = await fabric.serve(ChatAgent(client, model), address)
        node = fabric.node  # type: ignore[attr-defined]
        _peer.announce("chat", id=node.id, path=node.physical_path, addresses=bound)
        await stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
