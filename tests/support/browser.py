"""A real headless Chromium for the web chat tests, driven by Playwright.

The browser is Debian's ``chromium`` (``scripts/ensure-chromium.sh`` installs
it; ``scripts/test.sh`` calls that script): Playwright only drives it, it never
downloads a browser of its own. Without a browser or Playwright the tests
skip with the reason, unless ``FAME_REQUIRE_BROWSER=1`` (set by
``scripts/test.sh`` under CI) makes that a failure.

:class:`PageWatch` records what a page did that a test may need to assert
never happened: dialogs (``alert``), uncaught errors, console errors and
Content-Security-Policy violations. Screenshots go to :func:`artifacts_dir`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest
from support.procs import REPO_ROOT

if TYPE_CHECKING:
    from playwright.async_api import Browser, ConsoleMessage, Dialog, Error, Page

ENSURE_SCRIPT = REPO_ROOT / "scripts" / "ensure-chromium.sh"
NARROW = {"width": 375, "height": 740}
"""A small phone's viewport: the page must be usable at 375 px width."""
WIDE = {"width": 1200, "height": 760}
UI_TIMEOUT_MS = 15_000
"""How long a page wait may take (the machine is shared: generous, but bounded)."""


def is_browser_required() -> bool:
    """Tell whether a missing browser must fail the browser tests rather than skip them."""
    return os.environ.get("FAME_REQUIRE_BROWSER", "").strip() == "1"


def _unavailable(reason: str) -> NoReturn:
    message = f"browser tests need Chromium and Playwright: {reason}"
    if is_browser_required():
        pytest.fail(f"{message} (FAME_REQUIRE_BROWSER=1)")
    pytest.skip(message)


def chromium_path() -> Path:
    """The Chromium binary: ``$FAME_CHROMIUM``, ``/usr/bin/chromium`` or ``chromium`` on PATH.

    Skips (or fails under ``FAME_REQUIRE_BROWSER=1``) when there is none.
    """
    candidates = [os.environ.get("FAME_CHROMIUM", ""), "/usr/bin/chromium"]
    found = shutil.which("chromium")
    if found:
        candidates.append(found)
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    _unavailable(
        f"no chromium binary; run {ENSURE_SCRIPT.relative_to(REPO_ROOT)} (it uses apt-get)"
    )


def artifacts_dir() -> Path:
    """Where screenshots go: ``$FAME_ARTIFACTS_DIR/web`` or ``.artifacts/web`` in the repository."""
    base = Path(os.environ.get("FAME_ARTIFACTS_DIR") or REPO_ROOT / ".artifacts")
    path = base / "web"
    path.mkdir(parents=True, exist_ok=True)
    return path


@asynccontextmanager
async def launch_chromium() -> AsyncIterator[Browser]:
    """Start headless Chromium through Playwright; closed on exit."""
    executable = chromium_path()
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:  # the dev extra installs it
        _unavailable(f"the playwright package is not installed ({exc}); run make install")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=os.fspath(executable),
            headless=True,
            # The test machine has no GPU and little shared memory; root needs --no-sandbox.
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            timeout=60_000,
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class PageWatch:
    """What a page did that tests assert on: dialogs, errors, CSP violations."""

    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    accept_dialogs: bool = False
    """Accept confirm() dialogs (a delete asks first); every dialog is still recorded."""

    @property
    def csp_violations(self) -> list[str]:
        return [text for text in self.console_errors if "Content Security Policy" in text]

    def attach(self, page: Page) -> None:
        page.on("dialog", self._on_dialog)
        page.on("pageerror", self._on_page_error)
        page.on("console", self._on_console)

    async def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        if self.accept_dialogs and dialog.type == "confirm":
            await dialog.accept()
        else:
            await dialog.dismiss()

    def _on_page_error(self, error: Error) -> None:
        self.page_errors.append(str(error))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)


async def new_page(
    browser: Browser, *, viewport: dict[str, int] | None = None, dark: bool = False
) -> tuple[Page, PageWatch]:
    """Open a page in a fresh context (its own storage), watched by a :class:`PageWatch`."""
    context = await browser.new_context(
        viewport=viewport or WIDE, color_scheme="dark" if dark else "light"
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = await context.new_page()
    watch = PageWatch()
    watch.attach(page)
    return page, watch


async def screenshot(page: Page, name: str) -> Path:
    """Save a screenshot of the page as a test artifact; return its path."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    path = artifacts_dir() / f"{safe}.png"
    await page.screenshot(path=os.fspath(path), full_page=False)
    return path
