"""Fixtures for the node tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fake_sentinel import FakeSentinel


@pytest.fixture
async def sentinel() -> AsyncIterator[FakeSentinel]:
    """A scripted sentinel; pass ``sentinel.connect`` to the node."""
    fake = FakeSentinel()
    yield fake
    await fake.aclose()
