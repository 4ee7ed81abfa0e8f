"""The attacks of issue 10, repeated against real processes with auth on: each now fails cleanly.

A real ``fame sentinel`` (tokens required) and a real ``fame agent chat``
(its token may serve ``chat@fame.fabric`` only) run on loopback; honest
clients and rogues are nodes of this test process with tokens of their own.
Before admission existed, every one of these attacks succeeded (see the
closing note of the security work and the README's "Security" section).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import pytest_asyncio
import trustme
from support.pool import ProcessPool
from support.procs import FAME, ManagedProcess
from support.sentinels import OurSentinel
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from famefabric import Agent, FameFabric, RemoteError
from famefabric.clock import timestamp
from famefabric.errors import ConnectionClosed, FabricError
from famefabric.node import Node
from famefabric.protocol.codec import envelope_from_dict
from famefabric.protocol.envelopes import cancel_notice
from famefabric.protocol.frames import Data, Envelope
from famefabric.security import StaticToken, mint_token
from famefabric.testing import OpenAIStubServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SECRET = "hostile-e2e-secret-" + "x" * 32
AUDIENCE = "fabric-e2e"
AGENT_ID = "chatAgentNode01"
CHAT = "chat@fame.fabric"


def token(subject: str, **claims: object) -> str:
    return mint_token(SECRET.encode(), subject=subject, audience=AUDIENCE, **claims)  # type: ignore[arg-type]


def client_token(subject: str) -> StaticToken:
    return StaticToken(token(subject, call=[CHAT]))


@dataclass
class Stack:
    sentinel: OurSentinel
    agent: ManagedProcess

    def fabric(self, credentials: StaticToken | None, **options: object) -> FameFabric:
        return FameFabric.create(
            admission_url=self.sentinel.admission_url,
            token=credentials,
            **options,  # type: ignore[arg-type]
        )


async def start_stack(
    processes: ProcessPool,
    llm: OpenAIStubServer,
    *,
    sentinel_env: dict[str, str] | None = None,
    sentinel_args: tuple[str, ...] = (),
    scheme: str = "ws",
    agent_env: dict[str, str] | None = None,
) -> Stack:
    sentinel = await processes.our_sentinel(
        node_id="hostileSentinel",
        env={"FAME_AUTH_SECRET": SECRET, "FAME_JWT_AUDIENCE": AUDIENCE, **(sentinel_env or {})},
        args=sentinel_args,
        scheme=scheme,
    )
    env = sentinel.node_env(
        {
            "OPENAI_BASE_URL": llm.url,
            "OPENAI_API_KEY": "test",
            "MODEL_NAME": "test",
            "CHAT_STORE": "memory://",
            "FAME_NODE_ID": AGENT_ID,
            "FAME_TOKEN": token("chat-agent", serve=[CHAT]),
            **(agent_env or {}),
        }
    )
    agent = processes.spawn("chat-agent", [FAME, "agent", "chat"], env=env)
    await agent.wait_for_line(rf"serving {CHAT}\s*$", stream="stderr", within=30, what="serving")
    return Stack(sentinel, agent)


@pytest_asyncio.fixture
async def stack(processes: ProcessPool, openai_stub: OpenAIStubServer) -> AsyncIterator[Stack]:
    yield await start_stack(processes, openai_stub)


async def chat_round(agent: Agent, conversation: str, text: str) -> str:
    await agent.start_task(id=conversation, payload={})
    reply = await agent.run_turn(conversation, text)
    assert isinstance(reply, str)
    return reply


async def test_anonymous_forged_expired_and_wrong_audience_attaches_are_refused(
    stack: Stack,
) -> None:
    url = f"{stack.sentinel.admission_url}/attacker"
    forged = mint_token(b"f" * 32, subject="mallory", audience=AUDIENCE)
    expired = jwt.encode(
        {"sub": "old-svc", "aud": AUDIENCE, "exp": int(time.time()) - 600}, SECRET, "HS256"
    )
    wrong_audience = mint_token(SECRET.encode(), subject="elsewhere", audience="other")
    attempts = [None] * 50 + [forged, expired, wrong_audience, "garbage"]
    statuses = []
    for bearer in attempts:
        options = {"subprotocols": ["bearer", bearer]} if bearer else {}
        try:
            async with connect(url, open_timeout=10, **options):  # type: ignore[arg-type]
                statuses.append(101)
        except InvalidStatus as exc:
            statuses.append(exc.response.status_code)
    assert statuses == [401] * len(attempts)  # before: 50 of 50 anonymous attaches accepted
    log = stack.sentinel.process.stderr()
    assert "subject 'mallory'" in log and "signature is not valid" in log
    assert "subject 'old-svc'" in log and "has expired" in log
    assert "subject 'elsewhere'" in log and "another audience" in log
    assert all(secret not in log for secret in (forged, expired, wrong_audience, SECRET))


async def test_rogues_cannot_bind_the_agents_address_and_it_answers_100_of_100(
    stack: Stack,
) -> None:
    hijacked: list[Envelope] = []

    async def steal(envelope: Envelope) -> None:
        hijacked.append(envelope)

    rogues = [stack.fabric(client_token(f"rogue{n}")) for n in range(4)]
    for rogue in rogues:
        await rogue.__aenter__()
    try:
        for n, rogue in enumerate(rogues):
            with pytest.raises(FabricError, match=f"'rogue{n}' lacks permission to serve"):
                await rogue.node.bind(CHAT, steal)
        async with stack.fabric(client_token("alice")) as honest:
            agent = Agent.remote_by_address(CHAT, fabric=honest)
            replies = await asyncio.gather(
                *(chat_round(agent, f"conv{n}", f"message {n}") for n in range(100))
            )
    finally:
        for rogue in rogues:
            await rogue.__aexit__(None, None, None)
    answered = [r for n, r in enumerate(replies) if r.startswith("echo(") and f"message {n}" in r]
    assert len(answered) == 100 and hijacked == []  # before: 52 of 100 went to a rogue


async def test_a_rogue_cannot_bind_another_nodes_reply_address(stack: Stack) -> None:
    async with (
        stack.fabric(client_token("victim")) as victim,
        stack.fabric(client_token("rogue")) as rogue,
    ):
        inbox = victim.node.reply_address
        assert inbox is not None

        async def divert(envelope: Envelope) -> None:
            raise AssertionError("a diverted reply reached the rogue")

        with pytest.raises(FabricError, match="only under its own path"):
            await rogue.node.bind(inbox, divert)
        agent = Agent.remote_by_address(CHAT, fabric=victim)
        replies = [await chat_round(agent, f"v{n}", f"m{n}") for n in range(10)]
        assert all(reply.endswith(f"m{n}") for n, reply in enumerate(replies))  # before: 0 of 10


async def test_a_rogue_cannot_take_over_the_agents_system_id(stack: Stack) -> None:
    impostor = Node(
        admission_url=stack.sentinel.admission_url,
        system_id=AGENT_ID,
        token=StaticToken(token("impostor", serve=[CHAT], call=[CHAT])),
        reconnect=False,
    )
    with pytest.raises(ConnectionClosed, match="another identity"):
        async with impostor:
            pass
    async with stack.fabric(client_token("alice")) as honest:
        agent = Agent.remote_by_address(CHAT, fabric=honest)
        for n in range(20):  # before: the impostor answered 318 of 383 calls
            assert (await chat_round(agent, f"t{n}", f"x{n}")).endswith(f"x{n}")
    assert stack.agent.is_running
    assert "system id in use by another identity" in stack.sentinel.process.stderr() or (
        "another identity" in stack.sentinel.process.stderr()
    )


async def test_subjects_cannot_read_list_continue_or_end_each_others_conversations(
    stack: Stack,
) -> None:
    async with (
        stack.fabric(client_token("alice")) as alice_fabric,
        stack.fabric(client_token("bob")) as bob_fabric,
    ):
        alice = Agent.remote_by_address(CHAT, fabric=alice_fabric)
        bob = Agent.remote_by_address(CHAT, fabric=bob_fabric)
        await chat_round(alice, "diary", "my secret")
        assert await bob.list_conversations() == []  # before: every id listed
        for attempt in (
            bob.get_conversation("diary"),  # before: the full history
            bob.run_turn("diary", "continue it"),
        ):
            with pytest.raises(RemoteError) as info:
                await attempt
            assert info.value.data == {"code": "conversation_not_found"}
        await bob.end_conversation("diary")  # before: deleted it
        history = (await alice.get_conversation("diary"))["history"]
        assert history[0] == {"role": "user", "content": "my secret"}
        assert await alice.list_conversations() == ["diary"]


async def test_tls_end_to_end_through_fame_chat(
    processes: ProcessPool, openai_stub: OpenAIStubServer, tmp_path: Path
) -> None:
    ca = trustme.CA()
    ca_file, cert_file, key_file = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    issued = ca.issue_cert("localhost")
    issued.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    issued.private_key_pem.write_to_path(str(key_file))
    tls = {"FAME_TLS_CA": str(ca_file)}
    stack = await start_stack(
        processes,
        openai_stub,
        sentinel_args=("--tls-cert", str(cert_file), "--tls-key", str(key_file)),
        scheme="wss",
        agent_env=tls,
    )
    assert "transport: TLS (wss://)" in stack.sentinel.process.stderr()
    token_file = tmp_path / "chat.token"
    token_file.write_text(token("tls-user", call=[CHAT]))
    chat = processes.spawn(
        "fame-chat",
        [FAME, "chat", "--no-stream"],
        env=stack.sentinel.node_env({"FAME_TOKEN_FILE": str(token_file), **tls}),
        stdin_pipe=True,
    )
    chat.send_stdin(b"hello over tls\n")
    assert await chat.wait_exit(within=60) == 0, chat.describe()
    assert "A> echo(" in chat.stdout() and "hello over tls" in chat.stdout()

    untrusted = processes.spawn(
        "fame-chat-untrusted",
        [FAME, "chat", "--no-stream"],
        env=stack.sentinel.node_env({"FAME_TOKEN_FILE": str(token_file)}),
        stdin_pipe=True,
    )
    untrusted.send_stdin(b"hello\n")
    assert await untrusted.wait_exit(within=60) != 0
    assert (
        "FAME_TLS_CA" in untrusted.stderr() and stack.sentinel.admission_url in untrusted.stderr()
    )


async def test_a_rogue_cannot_cancel_another_callers_request(stack: Stack) -> None:
    """A cancel notice naming the victim's request reaches the agent only from the victim."""
    slow = "slow@fame.fabric"
    secret_claims = {"serve": [slow]}
    received: list[Envelope] = []
    request_seen = asyncio.Event()
    cancel_seen = asyncio.Event()
    release = asyncio.Event()
    sentinel_url = stack.sentinel.admission_url
    async with (
        FameFabric.create(
            admission_url=sentinel_url, token=StaticToken(token("slow-svc", **secret_claims))
        ) as agent_fabric,
        stack.fabric(StaticToken(token("victim", call=[slow]))) as victim,
        stack.fabric(StaticToken(token("rogue", call=[slow]))) as rogue,
    ):
        agent_node = agent_fabric.node

        async def handle(envelope: Envelope) -> None:
            received.append(envelope)
            if isinstance(envelope.frame, Data):
                request_seen.set()
                await release.wait()
                payload = envelope.frame.payload
                await agent_node.reply(
                    envelope, {"jsonrpc": "2.0", "id": payload["id"], "result": 1}
                )
            else:
                cancel_seen.set()

        await agent_node.bind(slow, handle)
        call = asyncio.ensure_future(victim.node.call(slow, "work", {}, timeout=30))
        async with asyncio.timeout(10):
            await request_seen.wait()
        request = next(e for e in received if isinstance(e.frame, Data))
        assert request.corr_id is not None
        forged = envelope_from_dict(
            cancel_notice(to=slow, call_id=request.corr_id, envelope_id=request.id, ts=timestamp())
        )
        for _ in range(10):
            await rogue.node.send(forged)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await cancel_seen.wait()
        assert all(isinstance(e.frame, Data) for e in received)  # before: it reached the agent
        await victim.node.send(forged)  # the same notice from the request's sender does
        async with asyncio.timeout(10):
            await cancel_seen.wait()
        release.set()
        await asyncio.gather(call, return_exceptions=True)
