"""Run the stub OpenAI server as a process: ``python -m famefabric.testing.openai_server``.

``--port 0`` (the way tests use it) binds a free port; the first line on
stdout is ``listening on <base URL>``, with the port the server got. It
answers until SIGINT or SIGTERM and exits 0. The server class itself is
:class:`famefabric.testing.OpenAIStubServer` (re-exported here with its behaviours).
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from famefabric.testing._types import (
    Behaviour,
    Delay,
    Echo,
    Fail,
    Hang,
    RecordedRequest,
    Reply,
    StreamFailAfter,
    StreamRecord,
)
from famefabric.testing.openai_stub import OpenAIStubServer

__all__ = [
    "Behaviour",
    "Delay",
    "Echo",
    "Fail",
    "Hang",
    "OpenAIStubServer",
    "RecordedRequest",
    "Reply",
    "StreamFailAfter",
    "StreamRecord",
    "main",
]


def main(argv: list[str] | None = None) -> None:
    """Run an echo server in the foreground until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description="Serve a stub OpenAI Chat Completions API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds per streamed token")
    parser.add_argument("--api-key", default=None, help="reject other bearer tokens with 401")
    parser.add_argument("--model", action="append", dest="models", help="a known model (repeat)")
    args = parser.parse_args(argv)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    server = OpenAIStubServer(
        host=args.host,
        port=args.port,
        token_delay=args.token_delay,
        api_key=args.api_key,
        known_models=args.models,
    )
    with server:
        print(f"listening on {server.url}", flush=True)
        while not done.wait(0.5):
            pass


if __name__ == "__main__":
    main()
