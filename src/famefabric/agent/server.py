"""Serving one agent at one address: JSON-RPC requests in, replies out.

The node hands every Data and DeliveryAck envelope addressed to the agent to
:meth:`AgentServer.handle`, each in its own task, so requests run
concurrently. A request is answered at its ``replyTo`` with ``corrId`` set
to its JSON-RPC id (PROTOCOL.md §8.2). Streaming methods send one reply per
item and then the end marker; an error ends a stream without one (§8.3).

A caller that gives up sends a negative ``DeliveryAck`` whose ``corrId`` is
the request's id; the running handler is then cancelled. A request whose
``meta.deadline`` (unix milliseconds) has passed is not started.

At most ``max_concurrency`` handlers run at once and ``max_queued`` more
requests wait; the rest are refused at once as busy
(:mod:`famefabric.agent.limits`). Each handler runs with the caller the
sentinel stamped in the request's ``meta`` as :func:`~famefabric.agent.current_caller`.
An exception an operation did not expect is answered with its text (as the
reference does) and ``data: {"error_id": ...}``, the id under which the
agent logged its traceback.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, nullcontext
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from famefabric.agent import a2a, telemetry
from famefabric.agent.caller import caller_from_meta, reset_caller, set_caller
from famefabric.agent.limits import HandlerLimits, HandlerSlots
from famefabric.agent.operations import OperationSpec
from famefabric.errors import JSONValue, LocalProtocolError, OperationError
from famefabric.observability import metrics, tracing
from famefabric.protocol import jsonrpc
from famefabric.protocol.frames import Data, DeliveryAck, Envelope
from famefabric.protocol.ids import new_id

if TYPE_CHECKING:
    from famefabric.agent.base import BaseAgent
    from famefabric.node import Node

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[JSONValue] | AsyncIterator[JSONValue]]


def to_json(value: object) -> JSONValue:
    """Turn a method's return value into JSON (pydantic models by their wire shape)."""
    if isinstance(value, a2a._Wire):
        return value.to_wire()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


class AgentServer:
    """Dispatches the requests addressed to one agent.

    Args:
        agent: the agent whose methods answer.
        node: the node the agent is attached through.
        address: the address the agent serves (for logs and errors).
        limits: how many handlers run at once and how many requests wait;
            by default read from ``FAME_AGENT_MAX_CONCURRENCY`` and
            ``FAME_AGENT_MAX_QUEUED``.
    """

    def __init__(
        self, agent: BaseAgent, node: Node, address: str, *, limits: HandlerLimits | None = None
    ) -> None:
        self._agent = agent
        self._node = node
        self._address = address
        self.limits = limits or HandlerLimits.from_env()
        self._slots = HandlerSlots(self.limits)
        self._refused = 0
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._abandoned: set[str] = set()
        self._operations: dict[str, tuple[Handler, bool]] = {}
        self._known = frozenset(type(agent).operations()) | {
            "tasks/send",
            "tasks/get",
            "tasks/cancel",
            "tasks/sendSubscribe",
            "tasks/sendUnsubscribe",
        }
        metrics.watch_agent(self)
        self._a2a: dict[str, tuple[Handler, bool]] = {
            "tasks/send": (_a2a_handler(a2a.TaskSendParams, agent.start_task), False),
            "tasks/get": (_a2a_handler(a2a.TaskQueryParams, agent.get_task_status), False),
            "tasks/cancel": (_a2a_handler(a2a.TaskIdParams, agent.cancel_task), False),
            "tasks/sendSubscribe": (
                _a2a_handler(a2a.TaskSendParams, agent.subscribe_to_task_updates),
                True,
            ),
            "tasks/sendUnsubscribe": (
                _a2a_handler(a2a.TaskIdParams, agent.unsubscribe_task),
                False,
            ),
        }

    @property
    def running(self) -> int:
        """How many handlers are running now."""
        return self._slots.running

    @property
    def waiting(self) -> int:
        """How many requests wait for a free handler."""
        return self._slots.waiting

    async def handle(self, envelope: Envelope) -> None:
        """Handle one envelope addressed to the agent (called by the node)."""
        frame = envelope.frame
        if isinstance(frame, DeliveryAck):
            if not frame.ok and envelope.corr_id in self._running:
                log.debug("caller abandoned request %s; cancelling it", envelope.corr_id)
                self._abandoned.add(envelope.corr_id)
                self._running[envelope.corr_id].cancel()
            return
        if not isinstance(frame, Data):
            return
        request = jsonrpc.parse_request(frame.payload)
        if request is None or request.id is None or envelope.reply_to is None:
            # Not a request, a notification, or nowhere to answer (§10.1): not answered.
            log.debug("ignoring a payload at %s that is not an answerable request", self._address)
            return
        deadline = (envelope.meta or {}).get("deadline")
        if isinstance(deadline, int | float) and deadline < time.time() * 1000:
            log.debug(
                "skipping %s %s: its caller's deadline has passed", request.method, request.id
            )
            return
        task = asyncio.current_task()
        assert task is not None
        self._running[request.id] = task
        caller = set_caller(caller_from_meta(envelope.meta))
        record = telemetry.RequestTelemetry(
            request.method, self._known, self._address, envelope.meta
        )
        try:
            with tracing.current(record.span) if record.span is not None else nullcontext():
                await self._serve(envelope, request, record)
        except asyncio.CancelledError:
            record.outcome = telemetry.CANCELLED
            if request.id in self._abandoned and task.uncancel() == 0:
                return  # cancelled by the caller's notice: nobody waits for an answer
            raise
        finally:
            record.finish()
            reset_caller(caller)
            self._running.pop(request.id, None)
            self._abandoned.discard(request.id)

    async def _serve(
        self, envelope: Envelope, request: jsonrpc.Request, record: telemetry.RequestTelemetry
    ) -> None:
        try:
            await self._slots.acquire(self._address)
        except OperationError as exc:
            self._note_refusal(exc)
            payload = jsonrpc.make_error(request.id, exc.code, exc.message, exc.data)
            await self._send(envelope, request, payload, record)
            record.outcome = telemetry.BUSY
            return
        if self._refused:
            log.info(
                "%s: accepting requests again (%d refused while busy)",
                self._address,
                self._refused,
            )
            self._refused = 0
        try:
            await self._run(envelope, request, record)
        finally:
            self._slots.release()

    def _note_refusal(self, busy: OperationError) -> None:
        # One warning per busy spell, not one per refused request: a flood must
        # not turn into a log flood.
        if not self._refused:
            log.warning("%s", busy.message)
        self._refused += 1

    async def _run(
        self, envelope: Envelope, request: jsonrpc.Request, record: telemetry.RequestTelemetry
    ) -> None:
        try:
            handler, streaming = self._resolve(request)
            if streaming:
                await self._stream(envelope, request, handler, record)
                return
            result = await handler(request.params)  # type: ignore[misc]
            payload = jsonrpc.make_result(request.id, to_json(result))
        except OperationError as exc:
            payload = jsonrpc.make_error(request.id, exc.code, exc.message, exc.data)
        except Exception as exc:  # a handler's failure is the caller's answer
            payload = self._error_payload(request, exc)
        await self._send(envelope, request, payload, record)

    async def _stream(
        self,
        envelope: Envelope,
        request: jsonrpc.Request,
        handler: Handler,
        record: telemetry.RequestTelemetry,
    ) -> None:
        first = record.span is not None
        try:
            iterator = handler(request.params)
            assert isinstance(iterator, AsyncIterator)
            async with aclosing(iterator) as items:  # type: ignore[type-var]
                async for item in items:
                    if item is None:
                        log.warning(
                            "%s yielded None, which a stream cannot carry; skipped", request.method
                        )
                        continue
                    if first:
                        first = False
                        record.first_item()
                    await self._send(
                        envelope, request, jsonrpc.make_result(request.id, to_json(item))
                    )
        except OperationError as exc:
            await self._send(
                envelope,
                request,
                jsonrpc.make_error(request.id, exc.code, exc.message, exc.data),
                record,
            )
            return
        except Exception as exc:
            await self._send(envelope, request, self._error_payload(request, exc), record)
            return
        record.stream_ended()
        await self._send(envelope, request, jsonrpc.make_end_marker(request.id))

    async def _send(
        self,
        envelope: Envelope,
        request: jsonrpc.Request,
        payload: dict[str, Any],
        record: telemetry.RequestTelemetry | None = None,
    ) -> None:
        if record is not None:
            record.answered(payload)
        try:
            await self._node.reply(envelope, payload)
        except LocalProtocolError as exc:
            log.warning("reply to %s %s cannot be sent: %s", request.method, request.id, exc)
            message = f"result of {request.method} too large to send: {exc}"
            error = jsonrpc.make_error(
                request.id, jsonrpc.INTERNAL_ERROR, message, {"code": "result_too_large"}
            )
            await self._node.reply(envelope, error)

    def _error_payload(self, request: jsonrpc.Request, exc: Exception) -> dict[str, Any]:
        error_id = new_id()
        log.error(
            "%s at %s failed (error id %s)", request.method, self._address, error_id, exc_info=exc
        )
        if request.method.startswith("tasks/"):
            if isinstance(exc, ValidationError):
                return jsonrpc.make_error(
                    request.id,
                    jsonrpc.INVALID_REQUEST,
                    "Request payload validation error",
                    str(exc),
                )
            return jsonrpc.make_error(
                request.id, jsonrpc.INTERNAL_ERROR, "Internal error", str(exc)
            )
        # Operations answer with the exception's text (PROTOCOL.md §10.4); the
        # error id lets the caller quote the failure the agent logged.
        return jsonrpc.make_error(
            request.id,
            jsonrpc.INTERNAL_ERROR,
            str(exc) or type(exc).__name__,
            {"error_id": error_id},
        )

    def _resolve(self, request: jsonrpc.Request) -> tuple[Handler, bool]:
        method = request.method
        a2a_method = self._a2a.get(method)
        if a2a_method is not None:
            return a2a_method
        if method in ("tasks/pushNotification/set", "tasks/pushNotification/get"):
            raise OperationError(
                "Push Notification is not supported", code=jsonrpc.PUSH_NOT_SUPPORTED
            )
        cached = self._operations.get(method)
        if cached is None:
            spec = type(self._agent).operations().get(method)
            if spec is None:
                raise OperationError("Method not found", code=jsonrpc.METHOD_NOT_FOUND, data=method)
            cached = self._operations[method] = (
                _operation_handler(self._agent, spec),
                spec.streaming,
            )
        return cached


def _operation_handler(agent: BaseAgent, spec: OperationSpec) -> Handler:
    """Return a function calling the operation with a request's params.

    The common case (positional-or-keyword parameters, arguments that fit)
    is checked with a few set operations; anything else goes through
    ``Signature.bind``, whose error names the offending parameter.
    """
    method = getattr(agent, spec.attribute)
    where = f"{type(agent).__name__}.{spec.attribute}"
    params = list(spec.signature.parameters.values())[1:]
    names = tuple(p.name for p in params)
    simple = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
    required = frozenset(p.name for p in params if p.default is inspect.Parameter.empty)
    models = {
        p.name: p.annotation
        for p in params
        if isinstance(p.annotation, type) and issubclass(p.annotation, BaseModel)
    }

    takes_any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)

    def slow_bind(args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            bound = spec.signature.bind(agent, *args, **kwargs)
        except TypeError as exc:
            # ``data.unexpected`` names the keyword arguments the operation does
            # not take, so a caller can tell "drop this optional argument" from
            # any other refusal without reading the message.
            unexpected = [] if takes_any_keyword else sorted(kwargs.keys() - set(names))
            raise OperationError(
                f"invalid params for {where}: {exc}",
                code=jsonrpc.INVALID_PARAMS,
                data={"code": "invalid_params", "unexpected": unexpected} if unexpected else None,
            ) from None
        arguments = dict(bound.arguments)
        arguments.pop("self", None)
        return arguments

    def call(params: JSONValue) -> Any:
        try:
            args, kwargs = jsonrpc.split_params(params)
        except ValueError as exc:
            raise OperationError(
                f"invalid params for {where}: {exc}", code=jsonrpc.INVALID_PARAMS
            ) from None
        positional = names[: len(args)]
        fits = (
            simple
            and len(args) <= len(names)
            and kwargs.keys() <= set(names)
            and not kwargs.keys() & set(positional)
            and required <= set(positional) | kwargs.keys()
        )
        if not fits:
            return method(**_convert(models, slow_bind(args, kwargs)))
        if models:
            arguments = dict(zip(positional, args, strict=False)) | kwargs
            return method(**_convert(models, arguments))
        return method(*args, **kwargs)

    return call


def _convert(models: dict[str, type[BaseModel]], arguments: dict[str, Any]) -> dict[str, Any]:
    for name, model in models.items():
        value = arguments.get(name)
        if isinstance(value, dict):
            arguments[name] = model.model_validate(value)
    return arguments


def _a2a_handler(model: type[a2a._Wire], target: Callable[[Any], Any]) -> Handler:
    def call(params: JSONValue) -> Any:
        return target(model.model_validate(params))

    return call
