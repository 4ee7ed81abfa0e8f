"""What every conversation store promises besides its methods: errors, limits, URLs.

The public home of these names is :mod:`famefabric.chat.store`, which
re-exports them; they live here so that the implementations can raise them
without importing the module that builds the implementations.
"""

from __future__ import annotations

import re

from famefabric.errors import FabricError

KEPT_TURN_IDS = 32
"""How many recent turn ids a store remembers per conversation.

A retry of a turn arrives seconds after the original, so the last few turn ids
are enough to answer it without calling the model again; older ones are
forgotten to keep a long conversation's record bounded.
"""

# The password of a URL's "user:password@" part.
_PASSWORD = re.compile(r"(://[^/@:]*:)[^/@]*@")


def redact_url(url: str) -> str:
    """Return ``url`` with its password, if any, replaced by ``***``, for messages and logs."""
    return _PASSWORD.sub(r"\1***@", url)


class ConversationExists(FabricError):
    """A conversation with this id is already stored.

    Attributes:
        conversation_id: the id that is taken.
    """

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            f"conversation {conversation_id!r} already exists; load it or choose another id"
        )
        self.conversation_id = conversation_id


class ConversationNotFound(FabricError):
    """No conversation with this id is stored (never created, deleted or expired).

    Attributes:
        conversation_id: the id that was looked up.
    """

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            f"conversation {conversation_id!r} does not exist (never created, deleted "
            "or expired after being idle); create it first"
        )
        self.conversation_id = conversation_id


class VersionConflict(FabricError):
    """A turn was committed against a version that another turn already replaced.

    Attributes:
        conversation_id: the conversation concerned.
        expected_version: the version the caller based its turn on.
        actual_version: the version found in the store.
    """

    def __init__(self, conversation_id: str, expected_version: int, actual_version: int) -> None:
        super().__init__(
            f"conversation {conversation_id!r} is at version {actual_version}, not "
            f"{expected_version}: another turn was committed meanwhile; reload it and retry"
        )
        self.conversation_id = conversation_id
        self.expected_version = expected_version
        self.actual_version = actual_version


class StoreUnavailable(FabricError):
    """The store's backend is down or unreachable.

    Attributes:
        url: where the store lives, without credentials.
        reason: what the backend or the operating system reported.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"conversation store {url} is unavailable ({reason}); "
            "turns will work again when it is back"
        )
        self.url = url
        self.reason = reason
