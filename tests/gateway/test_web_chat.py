"""The web chat page in real headless Chromium against a real gateway, sentinel and chat agent.

The LLM is the stub server in this process, so each test knows what the
model streams and sees, at the stub, when the upstream response closes.
Screenshots go to ``.artifacts/web/``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from support.browser import NARROW, launch_chromium, new_page, screenshot
from support.pool import ProcessPool
from support.web_stack import CHAT_ADDRESS, WebStack, start_web_stack

from famefabric.testing import OpenAIStubServer, Reply

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

LONG_REPLY = " ".join(f"word{n}" for n in range(40))
MARKDOWN_REPLY = (
    "Counting again, **in words** this time:\n\n1. one\n2. two\n3. three\n\n"
    "Or with `range`:\n\n```python\nfor n in range(3):\n    print(n)\n```"
)
XSS_REPLY = (
    "Here: <img src=x onerror=alert(1)> and [a link](javascript:alert(1)) and "
    '<a href="javascript:alert(2)">another</a>\n\n```html\n<img src=x onerror=alert(1)>\n```'
)


@pytest.fixture(scope="module")
def llm() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer() as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(module_processes: ProcessPool, llm: OpenAIStubServer) -> WebStack:
    return await start_web_stack(module_processes, llm)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    async with launch_chromium() as chromium:
        yield chromium


@pytest.fixture(autouse=True)
def fresh_llm(llm: OpenAIStubServer) -> Iterator[None]:
    llm.reset()
    llm.token_delay = 0.0
    yield
    llm.reset()
    llm.token_delay = 0.0


async def open_chat(browser: Any, url: str, **kwargs: Any) -> tuple[Any, Any]:
    page, watch = await new_page(browser, **kwargs)
    await page.goto(url)
    await page.locator("body[data-ready=true]").wait_for(state="attached")
    return page, watch


async def send(page: Any, text: str) -> None:
    box = page.locator("#input")
    await box.fill(text)
    await box.press("Enter")


async def wait_reply_done(page: Any) -> Any:
    """Wait until the newest reply (the one the last send added) has ended; return it."""
    await page.wait_for_function(
        "() => { const all = document.querySelectorAll('.message[data-role=assistant]');"
        " return all.length > 0 && all[all.length - 1].dataset.done === 'true'; }"
    )
    return page.locator(".message[data-role=assistant]").last


def conversation_in(url: str) -> str:
    match = re.search(r"[?&]conversation=([^&#]+)", url)
    assert match, f"no conversation id in {url}"
    return match.group(1)


async def test_reply_streams_and_the_conversation_survives_a_reload(
    stack: WebStack, browser: Any
) -> None:
    stack.llm.token_delay = 0.05
    stack.llm.enqueue(Reply(LONG_REPLY))
    page, watch = await open_chat(browser, stack.url)
    await page.locator("#system-prompt").fill("You answer in words.")
    # Shift+Enter starts a new line; Enter sends.
    box = page.locator("#input")
    await box.type("Count for me, please")
    await box.press("Shift+Enter")
    await box.type("in words")
    assert await box.input_value() == "Count for me, please\nin words"
    assert await page.locator(".message").count() == 0
    await box.press("Enter")

    # Streaming: the reply is on screen while the stub is still sending it.
    streaming = page.locator(".message.streaming[data-role=assistant] .body")
    await page.wait_for_function(
        "() => { const b = document.querySelector('.message.streaming .body');"
        " return b && b.textContent.includes('word3'); }"
    )
    partial = await streaming.inner_text()
    assert "word39" not in partial
    assert await page.locator("#stop").is_visible()
    reply = await wait_reply_done(page)
    assert (await reply.locator(".body").inner_text()).strip() == LONG_REPLY
    assert await page.locator("#send").is_visible()

    # The LLM saw the system prompt and the message.
    first = stack.llm.requests[0].body["messages"]
    assert first[0] == {"role": "system", "content": "You answer in words."}
    assert first[-1]["content"] == "Count for me, please\nin words"

    conversation = conversation_in(page.url)
    entry = page.locator(f'#conversation-list li[data-id="{conversation}"]')
    await entry.wait_for()
    title = "Count for me, please in words"
    assert (await entry.locator("a").inner_text()) == title
    assert await page.locator("#chat-title").inner_text() == title
    await screenshot(page, "chat-wide")

    # Reload: the same conversation, from the gateway.
    await page.reload()
    await page.locator("body[data-ready=true]").wait_for(state="attached")
    done = page.locator(".message[data-role=assistant]")
    await done.first.wait_for()
    assert (await done.first.locator(".body").inner_text()).strip() == LONG_REPLY
    assert await page.locator(".message[data-role=user] .body").inner_text() == (
        "Count for me, please\nin words"
    )

    # A second tab (another browser context) opens the same URL.
    other, _ = await open_chat(browser, page.url)
    await other.locator(".message[data-role=assistant]").first.wait_for()
    assert await other.locator("#chat-title").inner_text() == title

    # The second turn carries the first exchange to the LLM.
    stack.llm.enqueue(Reply(MARKDOWN_REPLY))
    await send(other, "And again?")
    await wait_reply_done(other)
    second = stack.llm.requests[1].body["messages"]
    assert [m["content"] for m in second[1:]] == [
        "Count for me, please\nin words",
        LONG_REPLY,
        "And again?",
    ]
    await other.locator(".message[data-role=assistant] pre code").wait_for()
    await screenshot(other, "chat-markdown-wide")
    assert watch.page_errors == [] and watch.csp_violations == [] and watch.dialogs == []


async def test_stop_ends_the_turn_and_closes_the_upstream_response(
    stack: WebStack, browser: Any
) -> None:
    stack.llm.token_delay = 0.25
    stack.llm.enqueue(Reply(LONG_REPLY))
    page, watch = await open_chat(browser, stack.url)
    await send(page, "Say a lot")
    await page.wait_for_function(
        "() => { const b = document.querySelector('.message.streaming .body');"
        " return b && b.textContent.includes('word1'); }"
    )
    await page.locator("#stop").click()
    reply = await wait_reply_done(page)
    assert await reply.locator(".stopped").inner_text() == "[stopped]"
    assert await page.locator("#send").is_visible()

    record = await asyncio.to_thread(stack.llm.wait_for_stream_closed, 0, 10.0)
    assert record.closed_early and not record.finished
    assert record.tokens_sent < len(LONG_REPLY.split())

    # The conversation goes on: the next turn is answered.
    stack.llm.token_delay = 0.0
    stack.llm.enqueue(Reply("after the stop"))
    await send(page, "Shorter, please")
    reply = await wait_reply_done(page)
    assert (await reply.locator(".body").inner_text()).strip() == "after the stop"
    assert watch.page_errors == []


async def test_delete_removes_the_conversation(stack: WebStack, browser: Any) -> None:
    page, watch = await open_chat(browser, stack.url)
    watch.accept_dialogs = True
    await send(page, "Something to delete")
    await wait_reply_done(page)
    conversation = conversation_in(page.url)
    entry = page.locator(f'#conversation-list li[data-id="{conversation}"]')
    await entry.locator("button.delete").click()
    await entry.wait_for(state="detached")
    assert watch.dialogs and watch.dialogs[0].startswith("confirm: ")
    assert "conversation=" not in page.url
    assert await page.locator(".message").count() == 0

    # Gone at the gateway too: opening its URL says so.
    await page.goto(f"{stack.url}/?conversation={conversation}")
    error = page.locator("#messages .error-line")
    await error.wait_for()
    assert conversation in await error.inner_text()


async def test_hostile_reply_and_message_stay_inert(stack: WebStack, browser: Any) -> None:
    stack.llm.enqueue(Reply(XSS_REPLY))
    page, watch = await open_chat(browser, stack.url)
    await send(page, "<img src=x onerror=alert(3)> [x](javascript:alert(4))")
    reply = await wait_reply_done(page)
    await page.reload()
    await page.locator("body[data-ready=true]").wait_for(state="attached")
    await page.locator(".message[data-role=assistant]").first.wait_for()
    for _ in range(2):
        assert await page.locator("img[onerror]").count() == 0
        hostile = await page.evaluate(
            """() => [...document.querySelectorAll('#messages *')].flatMap((node) =>
                [...node.attributes].filter((a) => a.name.startsWith('on') ||
                    /^\\s*javascript:/i.test(a.value)).map((a) => node.tagName + '.' + a.name))"""
        )
        assert hostile == []
        for link in await page.locator("#messages a").all():
            await link.click()
        assert await page.evaluate("1") == 1
    text = await page.locator("#messages").inner_text()
    assert "<img src=x onerror=alert(1)>" in text  # the code block shows it as text
    assert "<img src=x onerror=alert(3)>" in text  # the user's own message is text
    assert watch.dialogs == []
    assert watch.page_errors == []
    del reply


async def test_unserved_agent_address_shows_the_error_line(stack: WebStack, browser: Any) -> None:
    page, watch = await open_chat(browser, stack.url)
    await page.locator("#model").fill("nobody@fame.fabric")
    await send(page, "Anyone there?")
    error = page.locator("#messages .error-line")
    await error.wait_for()
    text = await error.inner_text()
    assert text.startswith("error: ") and "nobody@fame.fabric" in text
    await page.locator("#model").fill(CHAT_ADDRESS)
    assert watch.page_errors == []


async def test_narrow_screen(stack: WebStack, browser: Any) -> None:
    stack.llm.enqueue(Reply(MARKDOWN_REPLY))
    page, watch = await open_chat(browser, stack.url, viewport=NARROW, dark=True)
    assert await page.locator("#sidebar").is_hidden()
    await send(page, "Show me code on a phone")
    await wait_reply_done(page)
    scroll_width = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= NARROW["width"]
    for selector in ("#input", "#send", "#model"):
        box = await page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= NARROW["width"]
    await screenshot(page, "chat-narrow")
    await page.locator("#open-sidebar").click()
    conversation = conversation_in(page.url)
    entry = page.locator(f'#conversation-list li[data-id="{conversation}"] a')
    await entry.wait_for(state="visible")
    await page.wait_for_function(
        "() => document.getElementById('sidebar').getBoundingClientRect().x >= 0"
    )
    await screenshot(page, "chat-narrow-list")
    await entry.click()  # choosing a conversation closes the list
    await page.locator("#sidebar").wait_for(state="hidden")
    await page.locator(".message[data-role=assistant] pre code").wait_for()
    assert watch.page_errors == []
