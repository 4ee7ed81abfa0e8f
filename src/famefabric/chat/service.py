"""Running the chat agent as a service: model, store and fabric put together."""

from __future__ import annotations

import asyncio
import logging
import os

from famefabric.chat.agent import ChatAgent
from famefabric.chat.limits import ChatInputLimits
from famefabric.chat.openai_model import OpenAIChatModel
from famefabric.chat.settings import DEFAULT_ADDRESS, ChatSettings
from famefabric.chat.store import open_store
from famefabric.chat.stores._contract import redact_url
from famefabric.fabric import FameFabric, aserve
from famefabric.settings import FabricSettings

log = logging.getLogger(__name__)


def build_model(settings: ChatSettings) -> OpenAIChatModel:
    """Return the OpenAI-compatible model the settings describe."""
    return OpenAIChatModel(
        model=settings.model,
        api_key=settings.api_key,
        base_url=settings.base_url,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
    )


async def serve_chat_agent(
    fabric_settings: FabricSettings,
    chat_settings: ChatSettings,
    *,
    address: str = DEFAULT_ADDRESS,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve a :class:`ChatAgent` at ``address`` until SIGINT/SIGTERM or ``stop``.

    Raises:
        ConnectionClosed: the sentinel cannot be reached.
        ConfigurationError: the store URL is invalid.
    """
    model = build_model(chat_settings)
    if not model.is_configured:
        log.warning(
            "no OPENAI_API_KEY is set: the agent runs, but every turn fails until you set it "
            "(or point OPENAI_BASE_URL at a server that needs no key)"
        )
    log.info("chat agent: model %s, store %s", model.describe(), redact_url(chat_settings.store))
    try:
        async with open_store(chat_settings.store, idle_ttl=chat_settings.idle_ttl) as store:
            agent = ChatAgent(
                model=model,
                store=store,
                max_message_chars=chat_settings.max_message_chars,
                system_prompt=chat_settings.system_prompt,
                max_history_length=chat_settings.max_history_length,
                idle_ttl=chat_settings.idle_ttl,
                input_limits=ChatInputLimits.from_env(os.environ),
            )
            async with FameFabric.create(settings=fabric_settings) as fabric:
                await aserve(agent, address, fabric=fabric, stop=stop)
    finally:
        await model.aclose()
