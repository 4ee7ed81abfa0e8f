"""The web chat page's files: no inline script, vendored libraries as recorded, headers set.

These checks read the files; tests/gateway/test_web_render.py and
tests/gateway/test_web_chat.py run the page in a real browser.
"""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from famefabric.gateway.web_headers import (
    CONTENT_SECURITY_POLICY,
    SECURITY_HEADERS,
    STATIC_DIR,
    SecurityHeaders,
)

VENDOR = STATIC_DIR / "vendor"


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.script_text.append(data)


def _html_files() -> list[Path]:
    return sorted(STATIC_DIR.rglob("*.html"))


@pytest.mark.parametrize("path", _html_files(), ids=lambda p: p.name)
def test_html_has_no_inline_script_handler_or_style(path: Path) -> None:
    parser = _Collect()
    parser.feed(path.read_text())
    assert parser.script_text == [], f"{path.name}: inline script is refused by the page's CSP"
    for tag, attrs in parser.tags:
        handlers = [name for name in attrs if name.startswith("on")]
        assert not handlers, f"{path.name}: <{tag}> has inline handlers {handlers}"
        assert "style" not in attrs, f"{path.name}: <{tag}> has a style attribute (CSP refuses it)"
        if tag == "script":
            src = attrs.get("src") or ""
            assert src and "//" not in src, f"{path.name}: scripts come from the page's own files"


def test_page_scripts_are_modules_that_exist() -> None:
    parser = _Collect()
    parser.feed((STATIC_DIR / "index.html").read_text())
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts, "index.html loads no script"
    for attrs in scripts:
        assert attrs.get("type") == "module"
        assert (STATIC_DIR / str(attrs["src"])).is_file()
    imports = re.compile(r"""^import\s[^;]*?from\s+"(\.[^"]+)";""", re.MULTILINE)
    for module in sorted((STATIC_DIR / "js").glob("*.js")):
        for target in imports.findall(module.read_text()):
            assert (module.parent / target).resolve().is_file(), f"{module.name} imports {target}"


def _recorded_sums() -> dict[str, str]:
    table = (VENDOR / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", table, re.MULTILINE)
    return dict(rows)


def test_vendored_files_match_their_recorded_versions() -> None:
    recorded = _recorded_sums()
    shipped = {path.name for path in VENDOR.iterdir() if path.suffix in {".js", ".mjs"}}
    assert shipped == set(recorded), "every vendored file has a row in vendor/README.md"
    for name, expected in recorded.items():
        actual = hashlib.sha256((VENDOR / name).read_bytes()).hexdigest()
        assert actual == expected, f"vendor/{name} changed: update vendor/README.md"
        head = (VENDOR / name).read_text()[:400]
        assert "License" in head or "license" in head, f"vendor/{name} lost its licence header"
    assert (VENDOR / "LICENSE.marked").is_file() and (VENDOR / "LICENSE.dompurify").is_file()


def test_policy_allows_only_the_pages_own_files() -> None:
    directives = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


async def _run(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await SecurityHeaders(app)(scope, receive, send)
    return sent


async def test_middleware_adds_headers_and_keeps_the_apps_own() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/plain"), (b"Referrer-Policy", b"same-origin")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    sent = await _run(app, {"type": "http", "method": "GET", "path": "/"})
    start = sent[0]
    headers = [(bytes(k).lower(), bytes(v)) for k, v in start["headers"]]
    assert (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()) in headers
    assert (b"x-content-type-options", b"nosniff") in headers
    assert [v for k, v in headers if k == b"referrer-policy"] == [b"same-origin"]
    assert len(headers) == 2 + len(SECURITY_HEADERS) - 1
    assert sent[1] == {"type": "http.response.body", "body": b"ok"}


async def test_middleware_passes_other_scopes_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        await send({"type": "lifespan.startup.complete"})

    sent = await _run(app, {"type": "lifespan"})
    assert seen == ["lifespan"]
    assert sent == [{"type": "lifespan.startup.complete"}]
