"""Slash commands of the chat REPL and its multi-line input convention.

A line starting with ``/`` is a command, never sent to the model:
``/help``, ``/new``, ``/system TEXT``, ``/history``, ``/usage`` and ``/exit``. A message
spans several lines when each line but the last ends with ``\\``, or between
two lines holding only ``\"\"\"``; a terminal paste of several lines is one
message too (bracketed paste).
"""

from __future__ import annotations

from typing import Any, Protocol, TextIO

from famefabric.chat.usage import TokenUsage, describe, total

HELP = """\
commands:
  /help          this list
  /new           start a new conversation (with the same system prompt)
  /system TEXT   start a new conversation whose system prompt is TEXT
  /history       show the messages the agent keeps of this conversation
  /usage         show the tokens each kept turn used (prompt, completion, total) and their sum
  /exit          leave (also exit, quit, Ctrl-D, or Ctrl-C at the prompt)
several lines as one message: end each line but the last with \\, or put \"\"\" alone on
a line before and after them; a paste of several lines is sent as one message.
Ctrl-C while a reply is written stops it. Input history is kept across sessions."""

CONTINUATION_PROMPT = ".. "
BLOCK_FENCE = '"""'


class ConversationControl(Protocol):
    """What the commands need from the client: start conversations, read history."""

    async def new_conversation(self, system_prompt: str | None) -> str:
        """Leave the current conversation and start another; return its id."""
        ...

    async def history(self) -> list[dict[str, Any]]:
        """Return the stored messages of the current conversation (role, content, usage)."""
        ...


class SlashCommands:
    """Runs one command line; writes what it has to say to ``output``."""

    def __init__(self, control: ConversationControl, output: TextIO) -> None:
        self._control = control
        self._out = output

    async def run(self, line: str) -> bool:
        """Run the command in ``line``; return False when the session should end."""
        name, _, argument = line.strip().partition(" ")
        argument = argument.strip()
        name = name.lower()
        if name in ("/exit", "/quit"):
            return False
        if name == "/help":
            self._say(HELP)
        elif name == "/new":
            conversation_id = await self._control.new_conversation(None)
            self._say(f"new conversation {conversation_id}")
        elif name == "/system":
            if not argument:
                self._say(
                    "usage: /system TEXT  (starts a new conversation with that system prompt)"
                )
            else:
                conversation_id = await self._control.new_conversation(argument)
                self._say(f"new conversation {conversation_id} with system prompt: {argument}")
        elif name == "/history":
            messages = await self._control.history()
            if not messages:
                self._say("(no messages yet)")
            for message in messages:
                who = "Q" if message.get("role") == "user" else "A"
                self._say(f"{who}> {message.get('content', '')}")
        elif name == "/usage":
            await self._usage()
        else:
            self._say(f"unknown command {name}; /help lists the commands")
        return True

    async def _usage(self) -> None:
        replies = [m for m in await self._control.history() if m.get("role") == "assistant"]
        if not replies:
            self._say("(no turns yet)")
            return
        usages = [TokenUsage.from_json(reply.get("usage")) for reply in replies]
        for number, usage in enumerate(usages, start=1):
            self._say(f"turn {number}: {describe(usage)}")
        self._say(f"total: {describe(total(usages))}")

    def _say(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()


def continues(line: str) -> bool:
    """Tell whether ``line`` asks for the next line to join it (a trailing backslash)."""
    return line.endswith("\\") and not line.endswith("\\\\")
