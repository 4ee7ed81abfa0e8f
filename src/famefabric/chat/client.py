"""The chat client: attach, start (or resume) a conversation, run the REPL.

Exit codes: 0 after a normal goodbye, 2 when the sentinel or the agent cannot
be reached (one line on stderr says which URL or address and what to check).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import TextIO

from famefabric.agent.a2a import make_task_params
from famefabric.agent.proxy import RemoteAgent
from famefabric.chat.repl import PipeLineReader, Repl, TerminalLineReader, describe_error
from famefabric.errors import (
    AttachRefused,
    ConnectionClosed,
    FabricError,
    NoRoute,
    OperationTimeout,
    RemoteError,
)
from famefabric.fabric import FameFabric
from famefabric.node import NodeEvent
from famefabric.protocol.ids import new_id
from famefabric.protocol.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND
from famefabric.settings import FabricSettings

log = logging.getLogger(__name__)

EXIT_UNREACHABLE = 2


@dataclass(frozen=True, slots=True)
class ChatOptions:
    """What ``fame chat`` was asked to do."""

    address: str = "chat@fame.fabric"
    system_prompt: str | None = None
    history: int | None = None
    conversation: str | None = None
    keep: bool = False
    stream: bool = True
    timeout: float = 120.0


class RemoteChatSession:
    """Sends turns of one conversation to a remote chat agent.

    Each turn carries a fresh turn id, so a retried turn is answered from
    the store instead of asking the model twice. Agents that take no turn id
    (the reference chat example) are detected by the code and data of their
    first refusal (:func:`may_reject_argument`) and then called without one.
    """

    def __init__(self, agent: RemoteAgent, conversation_id: str, *, timeout: float) -> None:
        self._agent = agent
        self.conversation_id = conversation_id
        self._timeout = timeout
        self._turn_ids = True
        self._takes_turn_ids = False  # known once a turn with a turn id succeeded

    def _extra(self, turn_id: str) -> dict[str, str]:
        return {"turn_id": turn_id} if self._turn_ids else {}

    def _refuses_turn_id(self, exc: RemoteError, shown: bool) -> bool:
        if (
            self._turn_ids
            and not self._takes_turn_ids
            and not shown
            and may_reject_argument(exc, "turn_id")
        ):
            self._turn_ids = False
            return True
        return False

    async def ask(self, question: str) -> str:
        """Send one turn; return the reply.

        A turn whose replica went away (or whose link dropped) is sent again
        with the same turn id, so it is answered once whoever answers it.
        """
        turn_id = new_id()
        for delay in (*RETRY_DELAYS, None):
            try:
                reply = await self._agent.run_turn(
                    self.conversation_id, question, _timeout=self._timeout, **self._extra(turn_id)
                )
                self._takes_turn_ids = self._turn_ids
                return str(reply)
            except RemoteError as exc:
                if not self._refuses_turn_id(exc, shown=False):
                    raise
            except (NoRoute, ConnectionClosed) as exc:
                if delay is None or not _is_retryable(exc):
                    raise
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def ask_streaming(self, question: str) -> AsyncIterator[str]:
        """Send one turn; yield the reply's pieces (retried like :meth:`ask` until one is shown)."""
        turn_id = new_id()
        for delay in (*RETRY_DELAYS, None):
            shown = False
            try:
                call = self._agent.stream_turn(
                    self.conversation_id, question, _timeout=self._timeout, **self._extra(turn_id)
                )
                async with aclosing(aiter(call)) as pieces:
                    async for piece in pieces:
                        shown = True
                        self._takes_turn_ids = self._turn_ids
                        yield str(piece)
                return
            except RemoteError as exc:
                if not shown and exc.code == METHOD_NOT_FOUND:
                    # An agent without stream_turn: answer whole replies instead.
                    yield await self.ask(question)
                    return
                if not self._refuses_turn_id(exc, shown):
                    raise
            except (NoRoute, ConnectionClosed) as exc:
                if shown or delay is None or not _is_retryable(exc):
                    raise
                await asyncio.sleep(delay)


def may_reject_argument(error: RemoteError, name: str) -> bool:
    """Tell whether an agent may have refused a call for the argument ``name``.

    Read from the error's code and data, never its text. Our agents answer
    ``-32602`` with ``data.unexpected`` listing the arguments they do not take
    (older ones send no data). The reference answers any exception of an
    operation, the ``TypeError`` of an unexpected argument included, as
    ``-32603`` with no data, while ours always send data with ``-32603``: so
    that answer may be a refusal, and the caller tries once without the
    argument (a real failure then fails again).
    """
    data = error.data
    if error.code == INVALID_PARAMS:
        if data is None:
            return True
        unexpected = data.get("unexpected") if isinstance(data, dict) else None
        return isinstance(unexpected, list) and name in unexpected
    return error.code == INTERNAL_ERROR and data is None


RETRY_DELAYS = (0.5, 1.5)
"""Waits before sending a turn again after its replica or link went away."""


def _is_retryable(exc: NoRoute | ConnectionClosed) -> bool:
    if isinstance(exc, NoRoute):
        return exc.code in ("CHILD_UNREACHABLE", "ROUTE_CONNECTOR_CLOSED")
    return True


def _reader(stdin: TextIO, stdout: TextIO) -> PipeLineReader | TerminalLineReader:
    if stdin.isatty() and stdout.isatty():
        return TerminalLineReader(stdin)
    return PipeLineReader(stdin, stdout)


async def run_chat(
    options: ChatOptions,
    settings: FabricSettings,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run an interactive chat; return the process exit code."""
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        fabric = FameFabric.create(settings=settings)
        async with fabric:
            fabric.node.add_listener(lambda event: _show_event(event, err))
            agent = RemoteAgent(options.address, fabric=fabric)
            conversation_id = await _open_conversation(agent, options, out)
            session = RemoteChatSession(agent, conversation_id, timeout=options.timeout)
            await Repl(session, _reader(stdin, out), out, stream=options.stream).run()
            if options.keep:
                out.write(
                    f"conversation kept: resume it with  fame chat --conversation {conversation_id}\n"
                )
            else:
                try:
                    await agent.end_conversation(conversation_id, _timeout=5.0)
                except FabricError as exc:
                    err.write(f"warning: could not end the conversation: {describe_error(exc)}\n")
            out.write("goodbye\n")
            out.flush()
            return 0
    except NoRoute as exc:
        err.write(
            f"no agent at {exc.address or options.address} — is it running? (start it with 'fame agent chat' or 'make start')\n"
        )
        return EXIT_UNREACHABLE
    except AttachRefused as exc:
        if exc.status not in (401, 403):
            err.write(f"cannot attach to the sentinel at {settings.admission_url}: {exc}\n")
            return EXIT_UNREACHABLE
        err.write(
            f"the sentinel at {settings.admission_url} refused this client: {exc.reason}. "
            "It requires a token: set FAME_TOKEN_FILE (make start creates "
            ".run/tokens/chat.token) or FAME_TOKEN.\n"
        )
        return EXIT_UNREACHABLE
    except ConnectionClosed as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        err.write(
            f"cannot reach the sentinel at {settings.admission_url} ({cause}). "
            "Is it running ('fame sentinel' or 'make start')? Check FAME_DIRECT_ADMISSION_URL.\n"
        )
        return EXIT_UNREACHABLE
    except OperationTimeout as exc:
        err.write(f"{exc}: is the agent at {options.address} overloaded or stuck?\n")
        return EXIT_UNREACHABLE
    except RemoteError as exc:
        err.write(f"error: {exc.message}\n")
        return 1


async def _open_conversation(agent: RemoteAgent, options: ChatOptions, out: TextIO) -> str:
    if options.conversation:
        try:
            state = await agent.get_conversation(options.conversation, _timeout=10.0)
        except RemoteError as exc:
            if not (
                isinstance(exc.data, dict) and exc.data.get("code") == "conversation_not_found"
            ):
                raise
        else:
            count = len(state.get("history", [])) if isinstance(state, dict) else 0
            out.write(f"conversation {options.conversation} resumed ({count} messages)\n")
            return options.conversation
    conversation_id = options.conversation or new_id()
    payload: dict[str, object] = {}
    if options.system_prompt:
        payload["system_prompt"] = options.system_prompt
    params = make_task_params(
        id=conversation_id, payload=payload, history_length=options.history or 10
    )
    await agent.start_task(params=params, timeout=10.0)
    out.write(f"conversation {conversation_id} (type exit or press Ctrl-D to leave)\n")
    out.flush()
    return conversation_id


def _show_event(event: NodeEvent, err: TextIO) -> None:
    if event.kind == "reconnecting":
        err.write(f"[connection to the sentinel lost; reconnecting in {event.delay or 0:.1f} s]\n")
        err.flush()
    elif event.kind == "attached":
        # The listener is added after the first attach: any later attach is a reconnect.
        err.write("[reconnected]\n")
        err.flush()
