"""An interactive client: Q> your question, A> the agent's answer. exit, quit or Ctrl-D to leave."""

import asyncio

from common import AGENT_ADDR

from famefabric import Agent, FameFabric
from famefabric.protocol.ids import new_id


async def main() -> None:
    async with FameFabric.create():
        agent = Agent.remote_by_address(AGENT_ADDR)
        conversation_id = new_id()
        await agent.start_task(
            id=conversation_id,
            payload={"system_prompt": "You are a helpful assistant."},
            history_length=10,
        )
        try:
            print("A>", await agent.run_turn(conversation_id, ""))
            while True:
                try:
                    question = await asyncio.to_thread(input, "Q> ")
                except EOFError:
                    break
                if question.strip().lower() in ("exit", "quit"):
                    break
                if question.strip():
                    print("A>", await agent.run_turn(conversation_id, question))
        finally:
            await agent.end_conversation(conversation_id)
        print("goodbye")


if __name__ == "__main__":
    asyncio.run(main())
