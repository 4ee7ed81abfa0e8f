"""The one-time login link of ``make run``, opened in real headless Chromium.

A gateway started with ``FAME_GATEWAY_LOGIN_TOKEN_FILE`` writes
``http://…/#login=CODE``; opening it signs the page in (the page exchanges the
code at ``POST /v1/login``), and the same link opened again is refused.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from support.browser import launch_chromium, new_page
from support.pool import ProcessPool
from support.web_stack import CHAT_ADDRESS, WebStack, mint_token, start_gateway, start_web_stack

from famefabric.testing import OpenAIStubServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SECRET = secrets.token_hex(32)


@pytest.fixture(scope="module")
def llm() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer() as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(module_processes: ProcessPool, llm: OpenAIStubServer) -> WebStack:
    return await start_web_stack(module_processes, llm, auth_secret=SECRET)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    async with launch_chromium() as chromium:
        yield chromium


async def test_the_login_link_signs_in_once(
    stack: WebStack, browser: Any, module_processes: ProcessPool, tmp_path: Path
) -> None:
    token_file, link_file = tmp_path / "chat.token", tmp_path / "login-link"
    token_file.write_text(mint_token(SECRET, "linkuser", "--call", CHAT_ADDRESS))
    _, url = await start_gateway(
        module_processes,
        stack.sentinel,
        {
            "FAME_AUTH_SECRET": SECRET,
            "FAME_GATEWAY_LOGIN_TOKEN_FILE": str(token_file),
            "FAME_GATEWAY_LOGIN_LINK_FILE": str(link_file),
        },
    )
    link = link_file.read_text().strip()
    assert link.startswith(f"{url}/#login=")

    page, watch = await new_page(browser)
    await page.goto(link)
    await page.locator("body[data-ready=true]").wait_for(state="attached")
    assert await page.locator("#signin").is_hidden()
    assert "login=" not in page.url  # taken out of the address bar at once
    assert (
        await page.evaluate("() => sessionStorage.getItem('fame.token')") == token_file.read_text()
    )
    assert watch.page_errors == []

    again, _ = await new_page(browser)
    await again.goto(link)
    error = again.locator("#signin-error")
    await error.wait_for(state="visible")
    assert "works once" in await error.inner_text()
