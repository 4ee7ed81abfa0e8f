"""Signing in to the web chat page of a gateway that requires fame tokens.

Sentinel, chat agent and gateway run with auth on (one HS256 secret); each
user holds a token from ``fame token create``. In real headless Chromium:
the page asks for a token, refuses a bad one with the gateway's reason, keeps
a good one for the tab only (sessionStorage) unless told to remember it, and
one user never sees another's conversation.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from support.browser import launch_chromium, new_page, screenshot
from support.pool import ProcessPool
from support.web_stack import CHAT_ADDRESS, WebStack, mint_token, start_web_stack

from famefabric.testing import OpenAIStubServer, Reply

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SECRET = secrets.token_hex(32)
USER_CALLS = ("--call", CHAT_ADDRESS)


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


async def sign_in(page: Any, token: str, *, remember: bool = False) -> None:
    await page.locator("#signin-token").fill(token)
    if remember:
        await page.locator("#signin-remember").check()
    await page.locator("#signin-form button[type=submit]").click()


async def test_sign_in_send_and_sign_out(stack: WebStack, browser: Any) -> None:
    alice = mint_token(SECRET, "alice", *USER_CALLS)
    page, watch = await new_page(browser)
    await page.goto(stack.url)
    await page.locator("#signin").wait_for(state="visible")
    assert await page.locator("#app").is_hidden()
    await screenshot(page, "signin-wide")

    # A token not signed with the fabric's secret is refused, with the gateway's reason.
    forged = mint_token(secrets.token_hex(32), "alice", *USER_CALLS)
    await sign_in(page, forged)
    error = page.locator("#signin-error")
    await error.wait_for(state="visible")
    assert (await error.inner_text()).startswith("error: ")
    assert await page.locator("#app").is_hidden()

    await sign_in(page, alice)
    await page.locator("body[data-ready=true]").wait_for(state="attached")
    assert await page.locator("#signin").is_hidden()
    stored = await page.evaluate(
        "() => [sessionStorage.getItem('fame.token'), localStorage.getItem('fame.token')]"
    )
    assert stored == [alice, None]

    stack.llm.enqueue(Reply("hello alice"))
    await page.locator("#input").fill("I am alice")
    await page.locator("#input").press("Enter")
    await page.locator('.message[data-role=assistant][data-done="true"]').wait_for()
    assert "conversation=" in page.url
    await page.reload()
    await page.locator(".message[data-role=assistant]").first.wait_for()
    assert await page.locator(".message[data-role=user] .body").inner_text() == "I am alice"

    await page.locator("#sign-out").click()
    await page.locator("#signin").wait_for(state="visible")
    assert await page.evaluate("() => sessionStorage.getItem('fame.token')") is None
    assert watch.dialogs == [] and watch.page_errors == [] and watch.csp_violations == []


async def test_sign_in_link_carries_the_token_in_the_fragment(
    stack: WebStack, browser: Any
) -> None:
    carol = mint_token(SECRET, "carol", *USER_CALLS)
    page, watch = await new_page(browser)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    await page.goto(f"{stack.url}/#token={carol}")
    await page.locator("body[data-ready=true]").wait_for(state="attached")
    assert await page.locator("#signin").is_hidden()
    assert carol not in page.url  # taken out of the address bar at once
    assert await page.evaluate("() => sessionStorage.getItem('fame.token')") == carol
    assert not any(carol in url for url in requests)  # a fragment never reaches a server

    # A link with a refused token lands on the sign-in form, saying why.
    forged = mint_token(secrets.token_hex(32), "carol", *USER_CALLS)
    second, _ = await new_page(browser)
    await second.goto(f"{stack.url}/#token={forged}")
    error = second.locator("#signin-error")
    await error.wait_for(state="visible")
    assert "sign in again" in await error.inner_text()
    assert await second.evaluate("() => sessionStorage.getItem('fame.token')") is None
    assert watch.page_errors == []


async def test_one_user_never_sees_anothers_conversation(stack: WebStack, browser: Any) -> None:
    alice = mint_token(SECRET, "alice2", *USER_CALLS)
    bob = mint_token(SECRET, "bob", *USER_CALLS)
    page, _ = await new_page(browser)
    await page.goto(stack.url)
    await sign_in(page, alice, remember=True)
    await page.locator("body[data-ready=true]").wait_for(state="attached")
    assert await page.evaluate("() => localStorage.getItem('fame.token')") == alice
    stack.llm.enqueue(Reply("secret plans"))
    await page.locator("#input").fill("alice's private question")
    await page.locator("#input").press("Enter")
    await page.locator('.message[data-role=assistant][data-done="true"]').wait_for()
    alice_url = page.url

    other, _ = await new_page(browser)
    await other.goto(alice_url)
    await sign_in(other, bob)
    await other.locator("body[data-ready=true]").wait_for(state="attached")
    error = other.locator("#messages .error-line")
    await error.wait_for()
    assert (await error.inner_text()).startswith("error: ")
    assert await other.locator(".message[data-role=user]").count() == 0
    assert "alice" not in await other.locator("#conversation-list").inner_text()
    assert "secret plans" not in await other.locator("body").inner_text()
