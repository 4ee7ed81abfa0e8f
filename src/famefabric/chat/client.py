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
from typing import Any, TextIO

from famefabric.agent.a2a import make_task_params
from famefabric.agent.proxy import RemoteAgent
from famefabric.chat.commands import SlashCommands
from famefabric.chat.conversation import DEFAULT_SYSTEM_PROMPT
from famefabric.chat.repl import (
    PipeLineReader,
    Repl,
    TerminalLineReader,
    WholeLines,
    describe_error,
)
from famefabric.chat.settings import data_dir
from famefabric.errors import (
    AttachRefused,
    ConnectionClosed,
    FabricError,
    NoRoute,
    OpenFailed,
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
    new: bool = False
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
                    named = naming_agent(exc, self._agent.address, "run_turn")
                    if named is exc:
                        raise
                    raise named from exc
            except (NoRoute, ConnectionClosed) as exc:
                if delay is None or not _is_retryable(exc):
                    raise
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def ask_streaming(self, question: str) -> AsyncIterator[str]:
        """Send one turn; yield the reply's pieces, retried like :meth:`ask`.

        A stream cut by a departing replica (or a dropped link) is asked again
        with the same turn id, also after text was shown; what the user already
        saw is not shown twice: a retried reply that repeats it continues where
        it stopped, and one that says something else is shown after a
        :data:`RESTART_MARK`.
        """
        turn_id = new_id()
        shown = ""  # what the user has seen of this turn's reply, over all attempts
        for delay in (*RETRY_DELAYS, None):
            received = ""
            fresh = not shown  # this attempt's text is shown as it comes
            try:
                call = self._agent.stream_turn(
                    self.conversation_id, question, _timeout=self._timeout, **self._extra(turn_id)
                )
                async with aclosing(aiter(call)) as pieces:
                    async for item in pieces:
                        piece = str(item)
                        received += piece
                        self._takes_turn_ids = self._turn_ids
                        if fresh:
                            shown += piece
                            yield piece
                        elif received.startswith(shown):
                            fresh = True  # past what was shown: show the rest
                            rest, shown = received[len(shown) :], received
                            if rest:
                                yield rest
                        elif not shown.startswith(received):
                            fresh = True  # another reply: say so, show it whole
                            shown = received
                            yield RESTART_MARK
                            yield received
                return
            except RemoteError as exc:
                if not shown and exc.code == METHOD_NOT_FOUND:
                    # An agent without stream_turn: answer whole replies instead.
                    yield await self.ask(question)
                    return
                if not self._refuses_turn_id(exc, bool(shown)):
                    named = naming_agent(exc, self._agent.address, "stream_turn")
                    if named is exc:
                        raise
                    raise named from exc
            except (NoRoute, ConnectionClosed) as exc:
                if delay is None or not _is_retryable(exc):
                    raise
                await asyncio.sleep(delay)


RESTART_MARK = " [cut off; answered again:] "
"""Shown when a retried stream's reply differs from the part already shown."""


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
        return TerminalLineReader(stdin, history_file=str(data_dir() / "chat_history"))
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
            conversation_id, resumed = await _open_conversation(agent, options, out)
            session = RemoteChatSession(agent, conversation_id, timeout=options.timeout)
            handle = ConversationHandle(
                agent, session, options, kept=options.keep or resumed, out=out, err=err
            )
            commands = SlashCommands(handle, out)
            reader = _reader(stdin, out)
            # Traced envelopes go to the same terminal: show the reply in whole lines.
            shown: TextIO = WholeLines(out) if settings.show_envelopes else out  # type: ignore[assignment]
            try:
                await Repl(session, reader, shown, stream=options.stream, commands=commands).run()
            finally:
                if isinstance(shown, WholeLines):
                    shown.drain()
            await handle.leave()
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
    except OpenFailed as exc:
        err.write(f"error: {exc}\n")
        return 1
    except RemoteError as exc:
        err.write(f"error: {exc.message}\n")
        return 1


def naming_agent(exc: RemoteError, address: str, operation: str) -> RemoteError:
    """Return ``exc``, or for an internal error one whose message names the agent and operation."""
    if exc.code != INTERNAL_ERROR:
        return exc
    return RemoteError(exc.code, describe_remote_failure(exc, address, operation), exc.data)


def describe_remote_failure(exc: RemoteError, address: str, operation: str) -> str:
    """Say which agent and operation failed; an internal error alone says nothing useful."""
    if exc.code == INTERNAL_ERROR:
        return f"the agent at {address} failed in {operation}: {exc}"
    return exc.message


async def _open_conversation(
    agent: RemoteAgent, options: ChatOptions, out: TextIO
) -> tuple[str, bool]:
    """Resume or start the conversation; return its id and whether it was resumed."""
    if options.conversation:
        try:
            state = await agent.get_conversation(options.conversation, _timeout=10.0)
        except RemoteError as exc:
            if not (
                isinstance(exc.data, dict) and exc.data.get("code") == "conversation_not_found"
            ):
                failure = describe_remote_failure(exc, options.address, "get_conversation")
                raise OpenFailed(failure) from exc
            if not options.new:
                raise OpenFailed(
                    f"no conversation {options.conversation!r} at {options.address} (a typo, or "
                    "it ended or expired): 'fame conversations list' shows the stored ones; "
                    "add --new to start a new conversation with this id"
                ) from None
        else:
            count = len(state.get("history", [])) if isinstance(state, dict) else 0
            out.write(
                f"conversation {options.conversation} resumed ({count} messages; kept on exit)\n"
            )
            return options.conversation, True
    conversation_id = options.conversation or new_id()
    # Always sent: agents that follow the reference require a system prompt.
    await _start(agent, conversation_id, options.system_prompt, options)
    new = "new conversation" if options.conversation else "conversation"
    out.write(f"{new} {conversation_id} (type exit or press Ctrl-D to leave)\n")
    out.flush()
    return conversation_id, False


async def _start(
    agent: RemoteAgent, conversation_id: str, system_prompt: str | None, options: ChatOptions
) -> None:
    # Always sent: agents that follow the reference require a system prompt.
    payload: dict[str, object] = {"system_prompt": system_prompt or DEFAULT_SYSTEM_PROMPT}
    params = make_task_params(
        id=conversation_id, payload=payload, history_length=options.history or 10
    )
    try:
        await agent.start_task(params=params, timeout=10.0)
    except RemoteError as exc:
        raise OpenFailed(describe_remote_failure(exc, options.address, "start_task")) from exc


class ConversationHandle:
    """The REPL's current conversation: ``/new`` and ``/system`` replace it, ``/history`` reads it.

    A conversation left for another is ended, unless it is kept (resumed, or ``--keep``).
    """

    def __init__(
        self,
        agent: RemoteAgent,
        session: RemoteChatSession,
        options: ChatOptions,
        *,
        kept: bool,
        out: TextIO,
        err: TextIO,
    ) -> None:
        self._agent = agent
        self._session = session
        self._options = options
        self._system_prompt = options.system_prompt
        self._kept = kept
        self._out = out
        self._err = err

    async def new_conversation(self, system_prompt: str | None) -> str:
        """Leave the current conversation and start another; return its id."""
        if system_prompt is not None:
            self._system_prompt = system_prompt
        conversation_id = new_id()
        await _start(self._agent, conversation_id, self._system_prompt, self._options)
        await self.leave()
        self._session.conversation_id = conversation_id
        self._kept = self._options.keep
        return conversation_id

    async def history(self) -> list[dict[str, Any]]:
        """Return the stored messages of the current conversation."""
        state = await self._agent.get_conversation(self._session.conversation_id, _timeout=10.0)
        history = state.get("history", []) if isinstance(state, dict) else []
        return [m for m in history if isinstance(m, dict)]

    async def leave(self) -> None:
        """Keep the current conversation (saying how to resume it) or end it."""
        conversation_id = self._session.conversation_id
        if self._kept:
            self._out.write(
                f"conversation kept: resume it with  fame chat --conversation {conversation_id}\n"
            )
            return
        try:
            await self._agent.end_conversation(conversation_id, _timeout=5.0)
        except FabricError as exc:
            self._err.write(f"warning: could not end the conversation: {describe_error(exc)}\n")


def _show_event(event: NodeEvent, err: TextIO) -> None:
    if event.kind == "reconnecting":
        err.write(f"[connection to the sentinel lost; reconnecting in {event.delay or 0:.1f} s]\n")
        err.flush()
    elif event.kind == "attached":
        # The listener is added after the first attach: any later attach is a reconnect.
        err.write("[reconnected]\n")
        err.flush()
