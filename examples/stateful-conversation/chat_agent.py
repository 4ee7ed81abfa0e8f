"""Runs the chat agent at chat@fame.fabric, talking to an OpenAI-compatible server."""

import asyncio
import logging
import os

from common import AGENT_ADDR, model_name

from famefabric import aserve
from famefabric.chat import ChatAgent
from famefabric.chat.openai_model import OpenAIChatModel


async def main() -> None:
    model = OpenAIChatModel(
        model=model_name(),
        api_key=os.environ.get("OPENAI_API_KEY"),
        base_url=os.environ.get("OPENAI_BASE_URL"),
    )
    await aserve(ChatAgent(model=model), AGENT_ADDR)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
