"""The ``@operation`` decorator and the per-class operation table.

``@operation`` marks an ``async def`` method (a unary JSON-RPC method) or an
``async def`` generator (a streaming one). ``BaseAgent.__init_subclass__``
collects the marked methods of a class into an immutable mapping from wire
name to :class:`OperationSpec`, checking each definition on the spot so that
a mistake fails at import time with a message naming the class, the method
and the fix.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar, overload

from famefabric.errors import DefinitionError

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__fame_operation__"


@dataclass(frozen=True, slots=True)
class OperationMark:
    """What ``@operation`` records on a function."""

    name: str | None
    streaming: bool | None


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """A validated operation of an agent class."""

    wire_name: str
    attribute: str
    streaming: bool
    signature: inspect.Signature


@overload
def operation(function: F, /) -> F: ...
@overload
def operation(*, name: str | None = None, streaming: bool | None = None) -> Callable[[F], F]: ...


def operation(
    function: F | None = None, /, *, name: str | None = None, streaming: bool | None = None
) -> F | Callable[[F], F]:
    """Expose an agent method as a JSON-RPC method.

    Use bare (``@operation``) or with options (``@operation(name="add")``).
    An ``async def`` generator is a streaming operation: each yielded value is
    sent as one result, then the end marker.

    Args:
        name: the wire method name; defaults to the Python method name.
        streaming: force or forbid streaming; by default, generators stream.
    """

    def mark(fn: F) -> F:
        setattr(fn, _MARK, OperationMark(name=name, streaming=streaming))
        return fn

    return mark(function) if function is not None else mark


_UNSUPPORTED_KINDS = {
    inspect.Parameter.VAR_POSITIONAL: "*",
    inspect.Parameter.VAR_KEYWORD: "**",
}


def _check(
    cls_name: str, attribute: str, fn: Callable[..., Any], mark: OperationMark
) -> OperationSpec:
    where = f"{cls_name}.{attribute}"
    is_generator = inspect.isasyncgenfunction(fn)
    if not (inspect.iscoroutinefunction(fn) or is_generator):
        raise DefinitionError(f"operation {where} must be an 'async def' method")
    streaming = is_generator if mark.streaming is None else mark.streaming
    if streaming and not is_generator:
        raise DefinitionError(
            f"operation {where} is marked streaming=True but is not an async generator; "
            "use 'yield' in its body or drop streaming=True"
        )
    if not streaming and is_generator:
        raise DefinitionError(
            f"operation {where} is an async generator but marked streaming=False; drop the flag"
        )
    try:
        signature = inspect.signature(fn, eval_str=True)
    except NameError:
        signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    if not params or params[0].name != "self":
        raise DefinitionError(f"operation {where} must be a method whose first parameter is 'self'")
    for param in params[1:]:
        if param.kind in _UNSUPPORTED_KINDS:
            raise DefinitionError(
                f"operation {where} has unsupported parameter {_UNSUPPORTED_KINDS[param.kind]}"
                f"{param.name}; declare each argument by name"
            )
        if param.annotation is inspect.Parameter.empty:
            raise DefinitionError(
                f"operation {where} parameter {param.name!r} has no type annotation; add one"
            )
    wire_name = mark.name or attribute
    if not wire_name or wire_name.startswith("tasks/"):
        raise DefinitionError(
            f"operation {where} cannot use the wire name {wire_name!r}; 'tasks/' names are reserved for A2A"
        )
    return OperationSpec(
        wire_name=wire_name, attribute=attribute, streaming=streaming, signature=signature
    )


def collect_operations(
    cls: type, inherited: Mapping[str, OperationSpec]
) -> Mapping[str, OperationSpec]:
    """Return the operation table of ``cls``: inherited ones plus those it defines.

    Raises:
        DefinitionError: an operation is not async, uses an unsupported
            parameter kind, lacks an annotation, or two share a wire name.
    """
    table = dict(inherited)
    for attribute, value in vars(cls).items():
        fn = value.__func__ if isinstance(value, staticmethod | classmethod) else value
        mark = getattr(fn, _MARK, None)
        if not isinstance(mark, OperationMark):
            # An override without the decorator keeps serving under the inherited name.
            for wire, spec in list(table.items()):
                if spec.attribute == attribute and callable(value):
                    table[wire] = _check(
                        cls.__name__, attribute, value, OperationMark(wire, spec.streaming)
                    )
            continue
        spec = _check(cls.__name__, attribute, fn, mark)
        clash = table.get(spec.wire_name)
        if clash is not None and clash.attribute != attribute:
            raise DefinitionError(
                f"operations {cls.__name__}.{clash.attribute} and {cls.__name__}.{attribute} "
                f"share the wire name {spec.wire_name!r}; give one of them @operation(name=...)"
            )
        for wire, existing in list(table.items()):
            if existing.attribute == attribute and wire != spec.wire_name:
                del table[wire]
        table[spec.wire_name] = spec
    return MappingProxyType(table)
