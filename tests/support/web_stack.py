"""The processes behind the web chat page: sentinel, chat agent, gateway, and the stub LLM.

:func:`start_web_stack` starts our sentinel (port 0), ``fame agent chat``
(in-memory store, LLM = an :class:`~famefabric.testing.OpenAIStubServer` in
the test process) and ``fame gateway`` (port 0: it reports the port it got),
and waits until the gateway answers ``GET /`` with the page. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass

from support.agents import our_chat_agent, start_agents
from support.pool import ProcessPool
from support.procs import FAME, READY_TIMEOUT, ManagedProcess, ProcessFailure, base_env
from support.sentinels import OurSentinel, Sentinel

from famefabric.testing import OpenAIStubServer

CHAT_ADDRESS = "chat@fame.fabric"
LISTENING = r"^gateway listening on http://127\.0\.0\.1:(\d+)"
"""The start-up line of ``fame gateway`` (stderr), with the port it bound."""


@dataclass
class WebStack:
    """The running processes and where the page is."""

    sentinel: Sentinel
    agent: ManagedProcess
    gateway: ManagedProcess
    llm: OpenAIStubServer
    url: str
    """The gateway's base URL, e.g. ``http://127.0.0.1:40123``."""


def _page_status(port: int) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


async def wait_gateway(
    process: ManagedProcess, port: int, *, within: float = READY_TIMEOUT
) -> None:
    """Wait until the gateway on ``port`` serves the page; fail at once if it exits."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not process.is_running:
            raise process.fail("the gateway exited before it served the page")
        if await asyncio.to_thread(_page_status, port) == 200:
            return
        await asyncio.sleep(0.1)
    raise process.fail(f"the gateway did not serve GET / on port {port} within {within} s")


async def start_gateway(
    pool: ProcessPool, sentinel: Sentinel, env: Mapping[str, str] | None = None
) -> tuple[ManagedProcess, str]:
    """Start ``fame gateway`` on loopback port 0 attached to ``sentinel``; it reports its port."""
    extra = {"FAME_GATEWAY_PORT": "0", "FAME_GATEWAY_HOST": "127.0.0.1"}
    extra.update(env or {})
    process = pool.spawn("gateway", [os.fspath(FAME), "gateway"], env=sentinel.node_env(extra))
    try:
        listening = await process.wait_for_line(
            LISTENING, stream="stderr", what="its 'gateway listening on' line"
        )
        port = int(listening.group(1))
        await wait_gateway(process, port)
    except ProcessFailure as exc:
        raise ProcessFailure(f"{exc}\n{sentinel.process.describe()}") from None
    return process, f"http://127.0.0.1:{port}"


def mint_token(secret: str, subject: str, *args: str) -> str:
    """A fame token from ``fame token create --subject SUBJECT ARGS...`` signed with ``secret``."""
    done = subprocess.run(
        [os.fspath(FAME), "token", "create", "--subject", subject, *args],
        env=base_env({"FAME_AUTH_SECRET": secret}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, f"fame token create failed: {done.stderr}"
    return done.stdout.strip()


async def start_web_stack(
    pool: ProcessPool, llm: OpenAIStubServer, *, auth_secret: str | None = None
) -> WebStack:
    """Start sentinel, chat agent and gateway; with ``auth_secret``, all three require tokens.

    The chat agent then presents a token that may serve its address; users
    need tokens of their own (:func:`mint_token`).
    """
    spec = our_chat_agent(CHAT_ADDRESS, llm.url)
    gateway_env: dict[str, str] = {}
    if auth_secret is None:
        sentinel = await pool.our_sentinel()
    else:
        sentinel = OurSentinel(node_id="webSentinel01", name="sentinel", log_dir=pool.log_dir)
        sentinel.process.env["FAME_AUTH_SECRET"] = auth_secret
        pool.processes.append(sentinel.process)
        await sentinel.start()
        agent_token = mint_token(auth_secret, "chat-agent", "--serve", CHAT_ADDRESS)
        spec = dataclasses.replace(spec, env={**spec.env, "FAME_TOKEN": agent_token})
        gateway_env["FAME_AUTH_SECRET"] = auth_secret
    (agent,) = await start_agents(pool, sentinel, [spec])
    gateway, url = await start_gateway(pool, sentinel, gateway_env)
    return WebStack(sentinel=sentinel, agent=agent, gateway=gateway, llm=llm, url=url)
