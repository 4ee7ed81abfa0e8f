"""The page's modules in real headless Chromium, served with the gateway's security headers.

A small in-test HTTP server serves ``static/`` with :data:`SECURITY_HEADERS`
(the page's own files, nothing else; the API answers 404), so these tests
need no fabric: markdown rendering keeps hostile replies inert, the
Content-Security-Policy really refuses inline script, and the event-stream
parser reads every way a stream can be cut into chunks.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import pytest_asyncio
from support.browser import NARROW, launch_chromium, new_page, screenshot

from famefabric.gateway.web_headers import SECURITY_HEADERS, STATIC_DIR

pytestmark = pytest.mark.asyncio(loop_scope="module")

XSS = [
    "<img src=x onerror=alert(1)>",
    "[click me](javascript:alert(1))",
    '<a href="JaVaScRiPt:alert(1)">mixed case</a>',
    "[entity](&#106;avascript:alert(1))",
    "<svg onload=alert(1)><circle r=1 /></svg>",
    "<script>alert(1)</script>",
    '<iframe src="javascript:alert(1)"></iframe>',
    "[data](data:text/html,<script>alert(1)</script>)",
    '<a href="#" onclick="alert(1)">handler</a>',
    "<details open ontoggle=alert(1)>x</details>",
    "`<img src=x onerror=alert(1)>` in code",
    "```html\n<img src=x onerror=alert(1)>\n```",
]


class _Handler(SimpleHTTPRequestHandler):
    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS:
            self.send_header(name.decode(), value.decode())
        super().end_headers()

    def do_GET(self) -> None:
        if self.path.startswith("/v1/"):
            self.send_error(404)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(STATIC_DIR))
    )
    thread = threading.Thread(target=server.serve_forever, name="static-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    async with launch_chromium() as chromium:
        yield chromium


async def test_hostile_markdown_renders_inert(site: str, browser: Any) -> None:
    page, watch = await new_page(browser)
    await page.goto(f"{site}/")
    rendered = await page.evaluate(
        """async (inputs) => {
            const { renderInto } = await import("/js/render.js");
            const box = document.createElement("div");
            box.id = "xss";
            document.body.replaceChildren(box);
            for (const text of inputs) {
                const part = document.createElement("section");
                renderInto(part, text);
                box.append(part);
            }
            // Let any image load fail and any handler that survived fire.
            await Promise.all([...box.querySelectorAll("img")].map((img) =>
                img.complete ? null : new Promise((done) => { img.onload = img.onerror = done; })));
            await new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));
            for (const link of box.querySelectorAll("a")) link.click();
            return box.innerHTML;
        }""",
        XSS,
    )
    # One more round trip: a dialog opened by the page would be recorded by now.
    assert await page.evaluate("1 + 1") == 2
    assert watch.dialogs == []
    assert watch.page_errors == []
    active = await page.evaluate(
        """() => [...document.querySelectorAll("#xss *")].flatMap((node) =>
            [...node.attributes]
                .filter((a) => a.name.startsWith("on") || /^\\s*(javascript|data):/i.test(a.value))
                .map((a) => `${node.tagName}.${a.name}=${a.value}`))"""
    )
    assert active == []
    assert await page.locator("#xss script, #xss iframe, #xss svg").count() == 0
    assert await page.locator("#xss img[onerror]").count() == 0
    # Markdown still works: the code span and block show the markup as text.
    code = await page.locator("#xss code").all_inner_texts()
    assert "<img src=x onerror=alert(1)>" in code
    assert any(text.strip() == "<img src=x onerror=alert(1)>" for text in code)
    assert "alert(1)" in rendered  # as text, not as code that ran
    await screenshot(page, "render-xss-inert")


async def test_policy_refuses_inline_script(site: str, browser: Any) -> None:
    page, watch = await new_page(browser)
    response = await page.goto(f"{site}/")
    assert response is not None
    assert "script-src 'self'" in (await response.all_headers())["content-security-policy"]
    ran = await page.evaluate(
        """async () => {
            window.inlineRan = false;
            const script = document.createElement("script");
            script.textContent = "window.inlineRan = true";
            document.head.append(script);
            const img = document.createElement("img");
            img.setAttribute("onerror", "window.inlineRan = true");
            img.src = "/missing.png";
            document.body.append(img);
            await new Promise((done) => img.addEventListener("error", done));
            return window.inlineRan;
        }"""
    )
    assert ran is False
    assert watch.csp_violations, "the browser reported no CSP refusal"


async def test_event_stream_parser_reads_any_chunking(site: str, browser: Any) -> None:
    page, _ = await new_page(browser)
    await page.goto(f"{site}/")
    result = await page.evaluate(
        r"""async () => {
            const { EventStreamParser } = await import("/js/sse.js");
            const stream = ": comment\r\nevent: response.created\r\ndata: {\"a\":1}\r\n\r\n" +
                "event: response.output_text.delta\ndata: {\"delta\":\"h\u00e9\"}\n\n" +
                "data: line1\ndata: line2\rid: 7\r\r" +
                "event: response.completed\ndata: {}\n\n";
            const outcomes = new Set();
            for (let i = 0; i <= stream.length; i++) {
                for (let j = i; j <= stream.length; j += 7) {
                    const parser = new EventStreamParser();
                    const events = [
                        ...parser.feed(stream.slice(0, i)),
                        ...parser.feed(stream.slice(i, j)),
                        ...parser.feed(stream.slice(j)),
                    ];
                    outcomes.add(JSON.stringify(events));
                }
            }
            return [...outcomes];
        }"""
    )
    assert result == [
        '[{"event":"response.created","data":"{\\"a\\":1}"},'
        '{"event":"response.output_text.delta","data":"{\\"delta\\":\\"hé\\"}"},'
        '{"event":"message","data":"line1\\nline2"},'
        '{"event":"response.completed","data":"{}"}]'
    ]


async def test_sign_in_form_fits_a_narrow_screen(site: str, browser: Any) -> None:
    page, watch = await new_page(browser, viewport=NARROW, dark=True)
    await page.goto(f"{site}/")
    # The static server has no API: the page says so on its sign-in form.
    error = page.locator("#signin-error")
    await error.wait_for(state="visible")
    assert (await error.inner_text()).startswith("error: ")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= NARROW["width"]
    assert watch.page_errors == []
    assert watch.csp_violations == []
    await screenshot(page, "signin-narrow-dark")
