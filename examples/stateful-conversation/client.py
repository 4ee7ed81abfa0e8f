"""An interactive client: Q> your question, A> the agent's answer. exit, quit or Ctrl-D to leave."""

import asyncio
import threading

from common import AGENT_ADDR

from famefabric import Agent, FameFabric
from famefabric.protocol.ids import new_id


async def ask(prompt: str) -> str | None:
    """Read a line in a daemon thread (None at end of input), so Ctrl-C is not held up by it."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str | None] = loop.create_future()

    def read() -> None:
        try:
            line: str | None = input(prompt)
        except (EOFError, OSError, ValueError):
            line = None
        loop.call_soon_threadsafe(lambda: answer.done() or answer.set_result(line))

    threading.Thread(target=read, daemon=True).start()
    return await answer


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
                question = await ask("Q> ")
                if question is None or question.strip().lower() in ("exit", "quit"):
                    break
                if question.strip():
                    print("A>", await agent.run_turn(conversation_id, question))
        finally:
            await agent.end_conversation(conversation_id)
        print("goodbye")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("\ngoodbye")
