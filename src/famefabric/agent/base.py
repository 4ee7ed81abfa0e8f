"""``BaseAgent``: subclass it, add ``@operation`` methods, serve it at an address.

The A2A task methods (``start_task``, ``get_task_status``, ``cancel_task``,
``subscribe_to_task_updates``, ``unsubscribe_task``) answer ``tasks/send``,
``tasks/get``, ``tasks/cancel``, ``tasks/sendSubscribe`` and
``tasks/sendUnsubscribe``. Their defaults give a plain agent sensible
behaviour: ``start_task`` runs :meth:`BaseAgent.run_task` when a subclass
defines it, tasks it ran can be queried, and ``tasks/sendUnsubscribe``
always succeeds (peers fail every subscription otherwise, PROTOCOL.md §11.2).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Self

from famefabric.agent import a2a
from famefabric.agent.operations import OperationSpec, collect_operations
from famefabric.agent.proxy import Connection, RemoteAgent
from famefabric.errors import JSONValue, OperationError
from famefabric.protocol import jsonrpc

if TYPE_CHECKING:
    from famefabric.node import Node

log = logging.getLogger(__name__)

RECENT_TASKS = 1000
TASK_POLL_INTERVAL = 0.5


class Agent:
    """Proxies for agents whose class the caller does not know.

    ``Agent.remote_by_address(address)`` returns a proxy that forwards any
    method name; a subclass of :class:`BaseAgent` gives a proxy typed as
    that class instead.
    """

    @staticmethod
    def remote_by_address(
        address: str, *, fabric: Connection | None = None, node: Node | None = None
    ) -> RemoteAgent:
        """Return a proxy for the agent at ``address``.

        It calls through ``node``, else ``fabric``'s node, else the current fabric's.
        """
        return RemoteAgent(address, node=node, fabric=fabric)


class BaseAgent(Agent):
    """Base class of agents.

    Subclasses declare operations with :func:`famefabric.operation` and may
    override the A2A task methods. One instance may serve one address.
    """

    _operations: ClassVar[Mapping[str, OperationSpec]] = MappingProxyType({})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        inherited: dict[str, OperationSpec] = {}
        for base in reversed(cls.__mro__[1:]):
            inherited.update(getattr(base, "_operations", {}))
        cls._operations = collect_operations(cls, inherited)

    def __init__(self) -> None:
        self._recent_tasks: OrderedDict[str, a2a.Task] = OrderedDict()

    @classmethod
    def operations(cls) -> Mapping[str, OperationSpec]:
        """The class's operations by wire name."""
        return cls._operations

    @property
    def name(self) -> str:
        """A name for logs and error messages."""
        return type(self).__name__

    def _unsupported(self, operation: str) -> OperationError:
        return OperationError(
            f"agent {self.name} does not support operation {operation!r}",
            code=jsonrpc.UNSUPPORTED_OPERATION,
        )

    def remember_task(self, task: a2a.Task) -> None:
        """Keep a task so ``tasks/get`` can answer for it (the last 1000 are kept)."""
        self._recent_tasks[task.id] = task
        self._recent_tasks.move_to_end(task.id)
        while len(self._recent_tasks) > RECENT_TASKS:
            self._recent_tasks.popitem(last=False)

    async def run_task(self, payload: JSONValue, id: str | None) -> JSONValue:
        """Override to make ``start_task`` run a synchronous task.

        Args:
            payload: the data (or text) of the task message's first part.
            id: the task id.

        Returns:
            The result, returned to the caller in a ``completed`` task.
        """
        raise self._unsupported("run_task")

    async def start_task(self, params: a2a.TaskSendParams) -> a2a.Task:
        """Answer ``tasks/send``; by default runs :meth:`run_task` to completion."""
        if type(self).run_task is BaseAgent.run_task:
            raise self._unsupported("start_task")
        payload: JSONValue = a2a.first_data_part(params.message)
        if payload is None:
            payload = a2a.first_text_part(params.message)
        try:
            result = await self.run_task(payload, params.id)
        except OperationError:
            raise
        except Exception as exc:
            task = a2a.make_task(
                id=params.id,
                state=a2a.TaskState.FAILED,
                payload=str(exc),
                session_id=params.session_id,
            )
        else:
            task = a2a.make_task(
                id=params.id,
                state=a2a.TaskState.COMPLETED,
                payload=result,
                session_id=params.session_id,
            )
        self.remember_task(task)
        return task

    async def get_task_status(self, params: a2a.TaskQueryParams) -> a2a.Task:
        """Answer ``tasks/get`` for tasks this agent ran."""
        task = self._recent_tasks.get(params.id)
        if task is None:
            if not self._recent_tasks and type(self).start_task is BaseAgent.start_task:
                raise self._unsupported("get_task_status")
            raise OperationError(f"no task {params.id!r} on agent {self.name}", code=-32001)
        return task

    async def cancel_task(self, params: a2a.TaskIdParams) -> a2a.Task:
        """Answer ``tasks/cancel``; by default tasks cannot be cancelled."""
        raise OperationError("Task cannot be canceled", code=jsonrpc.TASK_NOT_CANCELABLE)

    async def subscribe_to_task_updates(
        self, params: a2a.TaskSendParams
    ) -> AsyncIterator[a2a.TaskEvent]:
        """Answer ``tasks/sendSubscribe``: start the task, stream its status until it ends."""
        task = await self.start_task(params)
        yield a2a.TaskStatusUpdateEvent(
            id=task.id, status=task.status, final=a2a.is_terminal(task.status.state)
        )
        for artifact in task.artifacts or ():
            yield a2a.TaskArtifactUpdateEvent(id=task.id, artifact=artifact)
        state = task.status.state
        while not a2a.is_terminal(state):
            await asyncio.sleep(TASK_POLL_INTERVAL)
            task = await self.get_task_status(a2a.TaskQueryParams(id=params.id))
            if task.status.state != state:
                state = task.status.state
                yield a2a.TaskStatusUpdateEvent(
                    id=task.id, status=task.status, final=a2a.is_terminal(state)
                )

    async def unsubscribe_task(self, params: a2a.TaskIdParams) -> None:
        """Answer ``tasks/sendUnsubscribe``: always succeeds."""
        return None

    @classmethod
    def remote_by_address(  # type: ignore[override]
        cls, address: str, *, fabric: Connection | None = None, node: Node | None = None
    ) -> Self:
        """Return a proxy for the agent at ``address``.

        Called on a subclass, the proxy only accepts that class's operations
        (and type checkers see its real signatures); called on ``Agent`` or
        ``BaseAgent``, it forwards any method name. It calls through ``node``,
        else ``fabric``'s node, else the current fabric's.
        """
        agent_class = None if cls is BaseAgent else cls
        return RemoteAgent(address, node=node, fabric=fabric, agent_class=agent_class)  # type: ignore[return-value]
