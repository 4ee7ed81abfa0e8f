"""The ``fame`` command: ``sentinel``, ``agent chat``, ``chat``, ``conversations`` and ``token``.

``main(argv)`` returns the exit code, so it can be tested in-process. Flags
win over environment variables, which win over defaults; settings are read
once here and passed down explicitly.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace

from famefabric.errors import ConfigurationError, FabricError
from famefabric.log_limits import install_repeat_filter
from famefabric.observability import tracing
from famefabric.observability.logs import configure_logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _configure_logging(level: str) -> None:
    # Text or JSON lines (FAME_LOG_FORMAT); HTTP clients stay at WARNING unless overridden.
    configure_logging(level)
    install_repeat_filter()


def _version() -> str:
    try:
        return importlib.metadata.version("famefabric")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fame", description="famefabric: agent message fabric and chat agent"
    )
    parser.add_argument("--version", action="version", version=f"fame {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sentinel = commands.add_parser("sentinel", help="run a sentinel (the router nodes attach to)")
    sentinel.add_argument(
        "--host",
        default=None,
        help="interface to listen on (default 0.0.0.0 with authentication, else 127.0.0.1)",
    )
    sentinel.add_argument(
        "--insecure",
        action="store_true",
        help="allow listening on a non-loopback interface without authentication",
    )
    sentinel.add_argument(
        "--port",
        type=int,
        default=None,
        help="port (default FAME_LISTENER_PORT or 8000); 0 picks a free one, which the "
        "'listening on HOST:PORT' log line reports",
    )
    sentinel.add_argument(
        "--node-id",
        default=None,
        help="the sentinel's system id (default FAME_NODE_ID, else stable per host and port)",
    )
    sentinel.add_argument(
        "--log-level",
        default=None,
        help="debug, info, warning or error (default FAME_LOG_LEVEL or info)",
    )
    sentinel.add_argument(
        "--show-envelopes",
        action="store_true",
        default=None,
        help="print every envelope (FAME_SHOW_ENVELOPES)",
    )
    sentinel.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="attaches open at once; more are refused with HTTP 503 "
        "(default FAME_SENTINEL_MAX_CONNECTIONS or 10000)",
    )
    sentinel.add_argument(
        "--backlog",
        type=int,
        default=None,
        help="connections queued before they are accepted "
        "(default FAME_SENTINEL_BACKLOG or the system maximum)",
    )
    sentinel.add_argument(
        "--cluster",
        default=None,
        metavar="NATS_URLS",
        help="join a cluster of sentinels over NATS: nats://HOST:4222[,nats://...] "
        "(default FAME_CLUSTER_URL; credentials only from FAME_CLUSTER_* variables)",
    )

    sentinel.add_argument(
        "--auth-secret-file",
        default=None,
        metavar="PATH",
        help="require HS256 tokens signed with the secret in PATH (instead of FAME_AUTH_SECRET)",
    )

    sentinel.add_argument(
        "--tls-cert",
        default=None,
        metavar="PEM",
        help="serve TLS with this certificate chain (FAME_TLS_CERT)",
    )
    sentinel.add_argument(
        "--tls-key", default=None, metavar="PEM", help="the certificate's key (FAME_TLS_KEY)"
    )

    token = commands.add_parser("token", help="admission tokens")
    token_actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = token_actions.add_parser(
        "create", help="print a token signed with FAME_AUTH_SECRET (or --auth-secret-file)"
    )
    create.add_argument("--subject", required=True, help="the identity's name (claim sub)")
    create.add_argument(
        "--serve", action="append", default=[], metavar="PATTERN", help="address it may bind"
    )
    create.add_argument(
        "--call", action="append", default=[], metavar="PATTERN", help="address it may call"
    )
    create.add_argument("--admin", action="store_true", help="an administrator (fame_admin)")
    create.add_argument(
        "--ttl", type=float, default=24 * 3600, help="seconds until it expires (default 86400)"
    )
    create.add_argument("--auth-secret-file", default=None, metavar="PATH")

    agent = commands.add_parser("agent", help="run an agent")
    agents = agent.add_subparsers(dest="agent", required=True, metavar="AGENT")
    chat_agent = agents.add_parser("chat", help="the stateful chat agent")
    chat_agent.add_argument(
        "--address", default="chat@fame.fabric", help="address to serve (default chat@fame.fabric)"
    )
    chat_agent.add_argument(
        "--store",
        default=None,
        help="CHAT_STORE: memory://, sqlite:///path.db or redis://host:port/db",
    )
    chat_agent.add_argument("--model", default=None, help="MODEL_NAME (default gpt-4.1-mini)")
    chat_agent.add_argument("--log-level", default=None, help="debug, info, warning or error")
    chat_agent.add_argument(
        "--show-envelopes", action="store_true", default=None, help="print every envelope"
    )
    chat_agent.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve /metrics on PORT (FAME_METRICS_PORT; 0 picks a free port; unset: off)",
    )

    gateway = commands.add_parser(
        "gateway", help="serve the OpenAI-compatible HTTP API and the web chat page"
    )
    gateway.add_argument(
        "--port", type=int, default=None, help="port (default FAME_GATEWAY_PORT or 8080)"
    )
    gateway.add_argument(
        "--host",
        default=None,
        help="interface (default FAME_GATEWAY_HOST; 127.0.0.1 unless auth is on)",
    )
    gateway.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback interface without auth (anyone who reaches it uses the fabric)",
    )
    gateway.add_argument(
        "--auth-secret-file",
        default=None,
        help="verify users' HS256 tokens with the secret in PATH (instead of FAME_AUTH_SECRET)",
    )
    gateway.add_argument("--log-level", default=None, help="debug, info, warning or error")

    from famefabric.chat.commands import HELP as CHAT_HELP

    chat = commands.add_parser(
        "chat",
        help="chat with the chat agent (interactive)",
        description="Chat with the chat agent: type a question after Q>, the reply follows A>.",
        epilog="In the chat, " + CHAT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument("--address", default="chat@fame.fabric", help="the chat agent's address")
    chat.add_argument("--system-prompt", default=None, help="system prompt of a new conversation")
    chat.add_argument(
        "--history", type=int, default=None, help="exchanges the agent keeps (default 10)"
    )
    chat.add_argument(
        "--conversation",
        default=None,
        help="resume the stored conversation with this id (it is kept on exit); an unknown id "
        "is refused unless --new is given",
    )
    chat.add_argument(
        "--new",
        action="store_true",
        help="with --conversation: start a new conversation with that id",
    )
    chat.add_argument(
        "--keep", action="store_true", help="keep the conversation on exit, to resume it later"
    )
    chat.add_argument(
        "--no-stream",
        dest="stream",
        action="store_false",
        help="show whole replies instead of streaming",
    )
    chat.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for a reply (default 120)"
    )
    chat.add_argument(
        "--verbose", action="store_true", help="print every envelope (FAME_SHOW_ENVELOPES=true)"
    )
    chat.add_argument(
        "--log-level", default=None, help="debug, info, warning or error (default warning)"
    )

    convs = commands.add_parser("conversations", help="inspect and manage stored conversations")
    store_help = "CHAT_STORE to read (default as the chat agent)"
    convs.add_argument("--store", default=None, help=store_help)
    actions = convs.add_subparsers(dest="action", required=True, metavar="ACTION")
    list_cmd = actions.add_parser(
        "list",
        help="list conversations, most recently active first: id, messages, first words",
    )
    list_cmd.add_argument("--limit", type=int, default=100)
    show = actions.add_parser("show", help="print one conversation as JSON")
    show.add_argument("id")
    delete = actions.add_parser("delete", help="delete one conversation")
    delete.add_argument("id")
    for action in (list_cmd, show, delete):  # --store before or after the action
        action.add_argument("--store", default=argparse.SUPPRESS, help=store_help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fame`` command; return its exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "sentinel":
            return _sentinel(args)
        if args.command == "agent":
            return _chat_agent(args)
        if args.command == "chat":
            return _chat(args)
        if args.command == "token":
            return _token(args)
        if args.command == "gateway":
            return _gateway(args)
        return _conversations(args)
    except ConfigurationError as exc:
        print(f"fame: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _fabric_settings(args: argparse.Namespace) -> object:
    from famefabric.settings import FabricSettings

    settings = FabricSettings.from_env()
    changes: dict[str, object] = {}
    if getattr(args, "log_level", None):
        changes["log_level"] = args.log_level.lower()
    if getattr(args, "show_envelopes", None):
        changes["show_envelopes"] = True
    return replace(settings, **changes) if changes else settings  # type: ignore[arg-type]


def _gateway(args: argparse.Namespace) -> int:
    from famefabric.gateway.server import run_gateway
    from famefabric.gateway.settings import GatewaySettings
    from famefabric.settings import FabricSettings

    fabric = _fabric_settings(args)
    assert isinstance(fabric, FabricSettings)
    settings = GatewaySettings.from_env()
    if args.port is not None:
        settings = replace(settings, port=args.port)
    if args.host:
        settings = replace(settings, host=args.host)
    _configure_logging(fabric.log_level)
    _start_tracing("famefabric-gateway")
    try:
        run_gateway(settings, fabric, insecure=args.insecure, secret_file=args.auth_secret_file)
    except OSError as exc:
        logging.getLogger("famefabric.cli").error(
            "cannot listen on %s:%d: %s", settings.host, settings.port, exc.strerror or exc
        )
        return 2
    return 0


def _sentinel(args: argparse.Namespace) -> int:
    from famefabric.sentinel import run_sentinel
    from famefabric.settings import FabricSettings

    settings = _fabric_settings(args)
    assert isinstance(settings, FabricSettings)
    run_sentinel(
        log_level=settings.log_level,
        host=args.host,
        port=settings.listener_port if args.port is None else args.port,
        system_id=args.node_id or settings.node_id,
        show_envelopes=settings.show_envelopes,
        max_connections=args.max_connections,
        backlog=args.backlog,
        auth_secret_file=args.auth_secret_file,
        cluster_url=args.cluster,
        insecure=args.insecure,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
    return 0


def _token(args: argparse.Namespace) -> int:
    from famefabric.security import mint_token, secret_from_env

    secret = secret_from_env(os.environ, args.auth_secret_file)
    if secret is None:
        raise ConfigurationError(
            "no secret to sign with: set FAME_AUTH_SECRET or pass --auth-secret-file PATH"
        )
    print(
        mint_token(
            secret,
            subject=args.subject,
            serve=args.serve,
            call=args.call,
            admin=args.admin,
            ttl=args.ttl,
            audience=os.environ.get("FAME_JWT_AUDIENCE") or None,
            issuer=os.environ.get("FAME_JWT_TRUSTED_ISSUER") or None,
        )
    )
    return 0


def _chat_agent(args: argparse.Namespace) -> int:
    from famefabric.chat.service import serve_chat_agent
    from famefabric.chat.settings import ChatSettings
    from famefabric.settings import FabricSettings

    settings = _fabric_settings(args)
    assert isinstance(settings, FabricSettings)
    chat_settings = ChatSettings.from_env()
    if args.store:
        chat_settings = replace(chat_settings, store=args.store)
    if args.model:
        chat_settings = replace(chat_settings, model=args.model)
    if args.metrics_port is not None:
        # The endpoint reads its port from the environment when the agent starts serving.
        os.environ["FAME_METRICS_PORT"] = str(args.metrics_port)
    _configure_logging(settings.log_level)
    _start_tracing("famefabric-chat-agent")
    try:
        asyncio.run(serve_chat_agent(settings, chat_settings, address=args.address))
    except FabricError as exc:
        logging.getLogger("famefabric.cli").error("%s", exc)
        return 2
    return 0


def _start_tracing(service_name: str) -> None:
    tracing.setup(service_name)


def _chat(args: argparse.Namespace) -> int:
    from famefabric.chat.client import ChatOptions, run_chat
    from famefabric.settings import FabricSettings

    if args.verbose:
        os.environ["FAME_SHOW_ENVELOPES"] = "true"
    settings = _fabric_settings(args)
    assert isinstance(settings, FabricSettings)
    if args.verbose:
        settings = replace(settings, show_envelopes=True)
    _configure_logging(args.log_level or "warning")
    _start_tracing("famefabric-chat")
    if args.history is not None and args.history < 1:
        raise ConfigurationError(f"--history={args.history} must be at least 1")
    options = ChatOptions(
        address=args.address,
        system_prompt=args.system_prompt,
        history=args.history,
        conversation=args.conversation,
        new=args.new,
        keep=args.keep,
        stream=args.stream,
        timeout=args.timeout,
    )
    return asyncio.run(run_chat(options, settings))


def _conversations(args: argparse.Namespace) -> int:
    from famefabric.chat.conversation import conversation_to_json
    from famefabric.chat.listing import list_conversations
    from famefabric.chat.settings import ChatSettings
    from famefabric.chat.store import open_store
    from famefabric.chat.stores._contract import redact_url

    url = args.store or ChatSettings.from_env().store

    async def run() -> int:
        async with open_store(url) as store:
            if args.action == "list":
                lines = await list_conversations(store, limit=args.limit)
                print("\n".join(lines) if lines else f"no conversations in {redact_url(url)}")
                return 0
            if args.action == "show":
                state = await store.load(args.id)
                if state is None:
                    print(f"no conversation {args.id!r} in {url}", file=sys.stderr)
                    return 1
                print(json.dumps(conversation_to_json(state), indent=2, ensure_ascii=False))
                return 0
            if await store.delete(args.id):
                print(f"deleted {args.id}")
                return 0
            print(f"no conversation {args.id!r} in {url}", file=sys.stderr)
            return 1

    try:
        return asyncio.run(run())
    except FabricError as exc:
        print(f"fame: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
