"""Proxies for remote agents: methods awaited like local ones.

``proxy.echo("hi")`` returns a :class:`RemoteCall`: awaiting it makes a unary
call, iterating it with ``async for`` consumes a streaming one. Arguments
travel as ``{"args": [...], "kwargs": {...}}`` (PROTOCOL.md §10.1).

A proxy calls through the node it was given, or the ``node`` of the fabric
it was given. Given neither, it uses the ambient default: the fabric of the
innermost ``async with FameFabric.create()``, which :mod:`famefabric.fabric`
installs with :func:`set_default_connection` (this module never imports it).
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncGenerator, Generator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Protocol

from famefabric.agent import a2a
from famefabric.errors import FabricError, JSONValue, RemoteError
from famefabric.protocol import jsonrpc
from famefabric.protocol.address import parse_address
from famefabric.protocol.ids import new_id

if TYPE_CHECKING:
    from famefabric.agent.base import BaseAgent
    from famefabric.node import Node


class Connection(Protocol):
    """Anything that has an attached node, e.g. a :class:`~famefabric.FameFabric`."""

    @property
    def node(self) -> Node:
        """The attached node; raises when not running."""
        ...


_default: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
    "famefabric_default_connection", default=None
)


def default_connection() -> Connection | None:
    """Return the connection proxies use when given none (the current fabric), if any."""
    return _default.get()


def set_default_connection(connection: Connection | None) -> contextvars.Token[Connection | None]:
    """Make ``connection`` the default in this context; undo with :func:`reset_default_connection`."""
    return _default.set(connection)


def reset_default_connection(token: contextvars.Token[Connection | None]) -> None:
    """Restore the default that was current before :func:`set_default_connection`."""
    _default.reset(token)


def _to_param(value: Any) -> JSONValue:
    if isinstance(value, a2a._Wire):
        return value.to_wire()
    return value


class RemoteCall:
    """One pending call: ``await`` it for a unary result, ``async for`` for a stream."""

    __slots__ = ("_method", "_params", "_proxy", "_timeout")

    def __init__(
        self, proxy: RemoteAgent, method: str, params: JSONValue, timeout: float | None
    ) -> None:
        self._proxy = proxy
        self._method = method
        self._params = params
        self._timeout = timeout

    def __await__(self) -> Generator[Any, None, JSONValue]:
        node = self._proxy._node()
        return node.call(
            self._proxy.address, self._method, self._params, timeout=self._timeout
        ).__await__()

    def __aiter__(self) -> AsyncGenerator[JSONValue, None]:
        """Start the streaming call; close the iterator (``aclosing``) to stop it early."""
        node = self._proxy._node()
        return node.stream(
            self._proxy.address, self._method, self._params, idle_timeout=self._timeout
        ).__aiter__()


class RemoteMethod:
    """A method of a remote agent; calling it returns a :class:`RemoteCall`."""

    __slots__ = ("_name", "_proxy")

    def __init__(self, proxy: RemoteAgent, name: str) -> None:
        self._proxy = proxy
        self._name = name

    def __call__(self, *args: Any, _timeout: float | None = None, **kwargs: Any) -> RemoteCall:
        params = jsonrpc.operation_params(
            tuple(_to_param(a) for a in args), {k: _to_param(v) for k, v in kwargs.items()}
        )
        return RemoteCall(self._proxy, self._name, params, _timeout)


class RemoteAgent:
    """A proxy for the agent at ``address``; build it with ``Agent.remote_by_address``.

    Args:
        address: the agent's address.
        node: the node to call through.
        fabric: the fabric (or any :class:`Connection`) whose node to call
            through, when ``node`` is not given; by default the current fabric.
        agent_class: when known, only its operations are accepted.
    """

    def __init__(
        self,
        address: str,
        *,
        node: Node | None = None,
        fabric: Connection | None = None,
        agent_class: type[BaseAgent] | None = None,
    ) -> None:
        parse_address(address)
        self.address = address
        self._explicit_node = node
        self._fabric = fabric
        self._agent_class = agent_class
        self._methods: dict[str, RemoteMethod] = {}

    def __repr__(self) -> str:
        return f"<RemoteAgent {self.address}>"

    def _node(self) -> Node:
        if self._explicit_node is not None:
            return self._explicit_node
        connection = self._fabric or _default.get()
        if connection is None:
            raise FabricError(
                f"cannot call {self.address}: no fabric is running; make calls inside "
                "'async with FameFabric.create():' or give the proxy a fabric or node"
            )
        return connection.node

    def __getattr__(self, name: str) -> RemoteMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        method = self._methods.get(name)
        if method is None:
            method = self._methods[name] = self._method(name)
        return method

    def _method(self, name: str) -> RemoteMethod:
        if self._agent_class is not None:
            known = self._agent_class.operations()
            if not any(spec.attribute == name or wire == name for wire, spec in known.items()):
                ops = ", ".join(sorted(spec.attribute for spec in known.values())) or "none"
                raise AttributeError(
                    f"{self._agent_class.__name__} has no operation {name!r}; its operations: {ops}"
                )
            for wire, spec in known.items():
                if spec.attribute == name:
                    return RemoteMethod(self, wire)
        return RemoteMethod(self, name)

    async def start_task(
        self,
        *,
        id: str | None = None,
        payload: JSONValue = None,
        history_length: int | None = None,
        session_id: str | None = None,
        params: a2a.TaskSendParams | None = None,
        timeout: float | None = None,
    ) -> a2a.Task:
        """Send ``tasks/send`` and return the task (a text payload becomes a TextPart, an object a DataPart)."""
        params = params or a2a.make_task_params(
            id=id or new_id(), payload=payload, session_id=session_id, history_length=history_length
        )
        result = await self._node().call(
            self.address, "tasks/send", params.to_wire(), timeout=timeout
        )
        return a2a.Task.model_validate(result)

    async def get_task_status(self, *, id: str, timeout: float | None = None) -> a2a.Task:
        """Send ``tasks/get``."""
        result = await self._node().call(self.address, "tasks/get", {"id": id}, timeout=timeout)
        return a2a.Task.model_validate(result)

    async def cancel_task(self, *, id: str, timeout: float | None = None) -> a2a.Task:
        """Send ``tasks/cancel``."""
        result = await self._node().call(self.address, "tasks/cancel", {"id": id}, timeout=timeout)
        return a2a.Task.model_validate(result)

    async def subscribe_to_task_updates(
        self,
        *,
        id: str | None = None,
        payload: JSONValue = None,
        params: a2a.TaskSendParams | None = None,
    ) -> AsyncGenerator[a2a.TaskEvent, None]:
        """Send ``tasks/sendSubscribe`` and yield its events; unsubscribes at the end."""
        params = params or a2a.make_task_params(id=id or new_id(), payload=payload)
        node = self._node()
        try:
            async with node.stream(self.address, "tasks/sendSubscribe", params.to_wire()) as stream:
                async for event in stream:
                    if isinstance(event, dict) and "artifact" in event:
                        yield a2a.TaskArtifactUpdateEvent.model_validate(event)
                    else:
                        yield a2a.TaskStatusUpdateEvent.model_validate(event)
        finally:
            await node.call(self.address, "tasks/sendUnsubscribe", {"id": params.id}, timeout=5.0)

    async def run_task(
        self, payload: JSONValue = None, *, id: str | None = None, timeout: float | None = None
    ) -> JSONValue:
        """Start a task and wait until it ends; return its result.

        Raises:
            RemoteError: the task failed; the message is the task's status text.
        """
        task = await self.start_task(id=id, payload=payload, timeout=timeout)
        if not a2a.is_terminal(task.status.state):
            events = self.subscribe_to_task_updates(
                params=a2a.make_task_params(id=task.id, payload=payload)
            )
            async with aclosing(events):  # unsubscribes as soon as the loop ends
                async for event in events:
                    if isinstance(event, a2a.TaskStatusUpdateEvent) and a2a.is_terminal(
                        event.status.state
                    ):
                        task = task.model_copy(update={"status": event.status})
                        break
        if task.status.state == a2a.TaskState.FAILED:
            raise RemoteError(
                jsonrpc.INTERNAL_ERROR, a2a.first_text_part(task.status.message) or "task failed"
            )
        result = a2a.first_data_part(task.status.message)
        return result if result is not None else a2a.first_text_part(task.status.message)
