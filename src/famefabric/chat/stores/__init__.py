"""The implementations of :class:`~famefabric.chat.store.ConversationStore`.

Pick one by URL with :func:`famefabric.chat.store.open_store`, or build one
directly for options the URL does not carry (a Redis key prefix, SQLite's busy
timeout).

The Redis store is imported from :mod:`famefabric.chat.stores.redis` only
when it is used: redis-py takes a noticeable part of a second to import, which
processes that never talk to Redis (the chat client) should not pay.
"""

from famefabric.chat.stores.memory import MemoryConversationStore
from famefabric.chat.stores.sqlite import SQLiteConversationStore

__all__ = ["MemoryConversationStore", "SQLiteConversationStore"]
