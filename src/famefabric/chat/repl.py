"""The interactive chat loop: ``Q> `` in, ``A> `` out.

The loop is thin and talks to injected pieces: a :class:`LineReader` for
input (a terminal with line editing and history, or a pipe), a text stream
for output, and a :class:`ChatSession` that sends the turns. Ctrl-C while a
reply is under way stops that reply (``[stopped]``) and the conversation goes
on; Ctrl-C at the prompt, ``exit``, ``quit`` or end of input end the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TextIO

from famefabric.chat.commands import BLOCK_FENCE, CONTINUATION_PROMPT, SlashCommands, continues
from famefabric.errors import ConnectionClosed, FabricError, NoRoute, OperationTimeout, RemoteError

EXIT_WORDS = frozenset({"exit", "quit"})
HISTORY_LENGTH = 1000
"""Input lines kept in the history file."""


class LineReader(Protocol):
    """Where the loop reads questions from."""

    async def read_line(self, prompt: str) -> str | None:
        """Show ``prompt`` and return the next line, or None at end of input."""
        ...

    def close(self) -> None:
        """Release the input (restore the terminal)."""
        ...


class ChatSession(Protocol):
    """What the loop needs from a conversation."""

    async def ask(self, question: str) -> str:
        """Send one turn and return the whole reply."""
        ...

    def ask_streaming(self, question: str) -> AsyncIterator[str]:
        """Send one turn and yield the reply's pieces."""
        ...


class PipeLineReader:
    """Reads lines from a non-terminal input (a pipe or a file)."""

    def __init__(self, stream: TextIO, output: TextIO) -> None:
        self._stream = stream
        self._output = output
        self._reader: asyncio.StreamReader | None = None
        self._transport: asyncio.BaseTransport | None = None

    async def read_line(self, prompt: str) -> str | None:
        """Write the prompt and read one line."""
        self._output.write(prompt)
        self._output.flush()
        if self._reader is None:
            loop = asyncio.get_running_loop()
            self._reader = asyncio.StreamReader()
            protocol = asyncio.StreamReaderProtocol(self._reader)
            try:
                self._transport, _ = await loop.connect_read_pipe(lambda: protocol, self._stream)
            except ValueError:
                # A regular file cannot be watched by the event loop: read it in a thread.
                self._reader = None
                line = await asyncio.to_thread(self._stream.readline)
                return self._strip(line)
        raw = await self._reader.readline()
        return self._strip(raw.decode(errors="replace"))

    def _strip(self, line: str) -> str | None:
        if not line:
            self._output.write("\n")
            return None
        text = line.rstrip("\r\n")
        # Piped input is not echoed by a terminal: show it, so the output reads as a session.
        self._output.write(text + "\n")
        self._output.flush()
        return text

    def close(self) -> None:
        """Stop watching the input."""
        if self._transport is not None:
            self._transport.close()


class TerminalLineReader:
    """Reads lines from a terminal with GNU readline's line editing and history.

    ``input()`` blocks, so each read runs in a daemon thread and hands its
    line to the event loop; the loop stays free to react to Ctrl-C. A read
    abandoned at exit is left behind (a daemon thread does not hold the
    process), and the terminal's settings are restored on :meth:`close`.
    """

    def __init__(self, stream: TextIO, history_file: str | None = None) -> None:
        import readline

        self._readline = readline
        self._stream = stream
        self._history_file = history_file
        self._saved_tty: list[Any] | None = None
        try:
            import termios

            self._saved_tty = termios.tcgetattr(stream.fileno())
        except (ImportError, OSError, ValueError):
            self._saved_tty = None
        with contextlib.suppress(Exception):  # a paste of several lines is one input
            readline.parse_and_bind("set enable-bracketed-paste on")
        readline.set_history_length(HISTORY_LENGTH)
        if history_file and os.path.exists(history_file):
            with contextlib.suppress(OSError):
                readline.read_history_file(history_file)

    async def read_line(self, prompt: str) -> str | None:
        """Show the prompt and wait for a line (None on Ctrl-D)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str | None] = loop.create_future()

        def deliver(line: str | None) -> None:
            if not done.done():
                done.set_result(line)

        def read() -> None:
            try:
                line: str | None = input(prompt)
            except (EOFError, OSError, ValueError):
                line = None
            with contextlib.suppress(RuntimeError):  # the loop may be closed at exit
                loop.call_soon_threadsafe(deliver, line)

        threading.Thread(target=read, name="fame-chat-input", daemon=True).start()
        line = await done
        if line is None:
            sys.stdout.write("\n")
        return line

    def close(self) -> None:
        """Restore the terminal and save the history."""
        if self._saved_tty is not None:
            import termios

            with contextlib.suppress(OSError, ValueError):
                termios.tcsetattr(self._stream.fileno(), termios.TCSADRAIN, self._saved_tty)
        if self._history_file:
            with contextlib.suppress(OSError):
                os.makedirs(os.path.dirname(self._history_file) or ".", exist_ok=True)
                self._readline.write_history_file(self._history_file)
                os.chmod(self._history_file, 0o600)  # questions may be private


class WholeLines:
    """An output that writes only whole lines; used while envelopes are traced.

    The envelope trace writes whole lines to the same terminal; holding a
    streamed reply back until its line is complete keeps trace lines from
    splitting it. :meth:`flush` writes nothing partial; :meth:`drain` does.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        """Add ``text``; write out every line it completes."""
        self._pending += text
        cut = self._pending.rfind("\n") + 1
        if cut:
            self._stream.write(self._pending[:cut])
            self._stream.flush()
            self._pending = self._pending[cut:]
        return len(text)

    def flush(self) -> None:
        """Keep an incomplete line back (it is written with its end)."""

    def drain(self) -> None:
        """Write out whatever is held back."""
        if self._pending:
            self._stream.write(self._pending)
            self._pending = ""
        self._stream.flush()


def describe_error(exc: BaseException) -> str:
    """Return the one-line text the REPL prints for a failed turn."""
    if isinstance(exc, RemoteError):
        return exc.message
    if isinstance(exc, NoRoute):
        return f"no agent at {exc.address} — is it running?"
    if isinstance(exc, ConnectionClosed):
        return f"{exc}; the client reconnects by itself, send the question again"
    if isinstance(exc, OperationTimeout):
        return str(exc)
    return str(exc) or type(exc).__name__


class Repl:
    """The question/answer loop.

    Args:
        session: sends the turns.
        reader: reads the questions.
        output: where answers go.
        stream: show replies as they are written (else whole).
        commands: runs lines starting with ``/`` (else they are sent as questions).
        on_interrupt_install: installs a Ctrl-C callback; returns a function
            that removes it. The default uses the event loop's SIGINT handler.
    """

    def __init__(
        self,
        session: ChatSession,
        reader: LineReader,
        output: TextIO,
        *,
        stream: bool = True,
        on_interrupt_install: Callable[[Callable[[], None]], Callable[[], None]] | None = None,
        commands: SlashCommands | None = None,
    ) -> None:
        self._commands = commands
        self._session = session
        self._reader = reader
        self._out = output
        self._stream = stream
        self._install = on_interrupt_install or _install_sigint
        self._current: asyncio.Task[None] | None = None
        self._prompt_task: asyncio.Task[str | None] | None = None

    def _on_interrupt(self) -> None:
        if self._current is not None and not self._current.done():
            self._current.cancel()
        elif self._prompt_task is not None and not self._prompt_task.done():
            self._prompt_task.cancel()

    async def run(self) -> None:
        """Loop until the user ends the session."""
        remove = self._install(self._on_interrupt)
        try:
            while True:
                self._prompt_task = asyncio.ensure_future(self._read_message())
                try:
                    line = await self._prompt_task
                except asyncio.CancelledError:
                    if _really_cancelled():
                        raise
                    self._out.write("\n")
                    return
                if line is None or line.strip().lower() in EXIT_WORDS:
                    return
                if not line.strip():
                    continue
                if self._commands is not None and line.lstrip().startswith("/"):
                    if not await self._command(line):
                        return
                    continue
                self._current = asyncio.ensure_future(self._turn(line))
                try:
                    await self._current
                except asyncio.CancelledError:
                    if _really_cancelled():
                        raise
                    self._out.write(" [stopped]\n" if self._stream else "[stopped]\n")
                    self._out.flush()
                finally:
                    self._current = None
        finally:
            remove()
            self._reader.close()

    async def _read_message(self) -> str | None:
        """Read one message: a line, lines joined by trailing backslashes, or a fenced block."""
        first = await self._reader.read_line("Q> ")
        if first is None:
            return None
        lines: list[str] = []
        if first.strip() == BLOCK_FENCE:
            while (line := await self._reader.read_line(CONTINUATION_PROMPT)) is not None:
                if line.strip() == BLOCK_FENCE:
                    break
                lines.append(line)
            return "\n".join(lines)
        lines.append(first)
        while continues(lines[-1]):
            lines[-1] = lines[-1][:-1]
            line = await self._reader.read_line(CONTINUATION_PROMPT)
            if line is None:
                break
            lines.append(line)
        return "\n".join(lines)

    async def _command(self, line: str) -> bool:
        assert self._commands is not None
        try:
            return await self._commands.run(line)
        except (FabricError, TimeoutError) as exc:
            self._out.write(f"error: {describe_error(exc)}\n")
            self._out.flush()
            return True

    async def _turn(self, question: str) -> None:
        self._out.write("A> ")
        self._out.flush()
        shown = False
        try:
            if self._stream:
                async for piece in self._session.ask_streaming(question):
                    self._out.write(piece)
                    self._out.flush()
                    shown = True
                self._out.write("\n")
            else:
                self._out.write(await self._session.ask(question) + "\n")
        except (FabricError, TimeoutError) as exc:
            self._out.write(("\n" if shown else "") + f"error: {describe_error(exc)}\n")
        self._out.flush()


def _really_cancelled() -> bool:
    """Tell whether the running task itself is being cancelled (not just a child)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _install_sigint(callback: Callable[[], None]) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, callback)
    except (NotImplementedError, RuntimeError, ValueError):
        return lambda: None

    def remove() -> None:
        loop.remove_signal_handler(signal.SIGINT)

    return remove
