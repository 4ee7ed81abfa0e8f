"""What every conversation store promises besides its methods: errors, limits, URLs.

The public home of these names is :mod:`famefabric.chat.store`, which
re-exports them; the implementations import them from here. The error
classes themselves are defined with every other exception in
:mod:`famefabric.errors`.
"""

from __future__ import annotations

import re

from famefabric.errors import (
    ConversationExists,
    ConversationNotFound,
    StoreUnavailable,
    VersionConflict,
)

__all__ = [
    "KEPT_TURN_IDS",
    "ConversationExists",
    "ConversationNotFound",
    "StoreUnavailable",
    "VersionConflict",
    "redact_url",
]

KEPT_TURN_IDS = 32
"""How many recent turn ids a store remembers per conversation.

A retry of a turn arrives seconds after the original, so the last few turn ids
are enough to answer it without calling the model again; older ones are
forgotten to keep a long conversation's record bounded.
"""

# The password of a URL's "user:password@" part.
_PASSWORD = re.compile(r"(://[^/@:]*:)[^/]*@")
# A password given as a query parameter (redis-py reads ``?password=``).
_QUERY_PASSWORD = re.compile(r"([?&](?:password|pass|pwd)=)[^&#]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Return ``url`` with its password, if any, replaced by ``***``, for messages and logs."""
    return _QUERY_PASSWORD.sub(r"\1***", _PASSWORD.sub(r"\1***@", url))
