"""The implementations of :class:`~famefabric.chat.store.ConversationStore`.

Pick one by URL with :func:`famefabric.chat.store.open_store`, or build one
directly for options the URL does not carry (a Redis key prefix, SQLite's busy
timeout).
"""

from famefabric.chat.stores.memory import MemoryConversationStore
from famefabric.chat.stores.redis import RedisConversationStore
from famefabric.chat.stores.sqlite import SQLiteConversationStore

__all__ = ["MemoryConversationStore", "RedisConversationStore", "SQLiteConversationStore"]
