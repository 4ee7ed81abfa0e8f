"""The stateful chat agent: conversations, stores, the LLM seam, the REPL.

The OpenAI adapter lives in :mod:`famefabric.chat.openai_model` and is not
imported here: the ``openai`` package takes a second to import, which the
chat client never needs.
"""

from famefabric.chat.agent import ChatAgent
from famefabric.chat.conversation import ChatMessage, ConversationState
from famefabric.chat.model import ChatModel, ChatModelError, ScriptedModel
from famefabric.chat.store import ConversationStore, open_store

__all__ = [
    "ChatAgent",
    "ChatMessage",
    "ChatModel",
    "ChatModelError",
    "ConversationState",
    "ConversationStore",
    "ScriptedModel",
    "open_store",
]
