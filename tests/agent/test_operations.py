"""@operation: collection and definition errors with exact messages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from famefabric import BaseAgent, DefinitionError, operation


def test_operations_are_collected_by_wire_name() -> None:
    class Calc(BaseAgent):
        @operation
        async def add(self, x: int, y: int) -> int:
            return x + y

        @operation(name="mul")
        async def multiply(self, x: int, y: int) -> int:
            return x * y

        @operation
        async def count(self, n: int) -> AsyncIterator[int]:
            for i in range(n):
                yield i

        async def helper(self) -> None:
            return None

    ops = Calc.operations()
    assert sorted(ops) == ["add", "count", "mul"]
    assert ops["mul"].attribute == "multiply"
    assert ops["count"].streaming and not ops["add"].streaming


def test_operation_table_is_immutable_and_inherited() -> None:
    class Base(BaseAgent):
        @operation
        async def ping(self) -> str:
            return "pong"

    class Child(Base):
        @operation
        async def pong(self) -> str:
            return "ping"

    assert sorted(Child.operations()) == ["ping", "pong"]
    assert sorted(Base.operations()) == ["ping"]
    with pytest.raises(TypeError):
        Child.operations()["x"] = Child.operations()["ping"]  # type: ignore[index]


def test_sync_operation_is_rejected_with_the_fix() -> None:
    with pytest.raises(DefinitionError) as info:

        class Bad(BaseAgent):
            @operation
            def run_turn(self, text: str) -> str:
                return text

    assert str(info.value) == "operation Bad.run_turn must be an 'async def' method"


def test_varargs_are_rejected() -> None:
    with pytest.raises(DefinitionError) as info:

        class Bad(BaseAgent):
            @operation
            async def many(self, *items: int) -> int:
                return 0

    assert (
        str(info.value)
        == "operation Bad.many has unsupported parameter *items; declare each argument by name"
    )


def test_missing_annotation_is_rejected() -> None:
    with pytest.raises(DefinitionError) as info:

        class Bad(BaseAgent):
            @operation
            async def echo(self, text) -> str:  # type: ignore[no-untyped-def]
                return str(text)

    assert str(info.value) == "operation Bad.echo parameter 'text' has no type annotation; add one"


def test_duplicate_wire_names_are_rejected() -> None:
    with pytest.raises(DefinitionError) as info:

        class Bad(BaseAgent):
            @operation(name="go")
            async def one(self) -> None:
                return None

            @operation(name="go")
            async def two(self) -> None:
                return None

    assert (
        str(info.value)
        == "operations Bad.one and Bad.two share the wire name 'go'; give one of them @operation(name=...)"
    )


def test_reserved_a2a_names_are_rejected() -> None:
    with pytest.raises(DefinitionError, match="'tasks/' names are reserved for A2A"):

        class Bad(BaseAgent):
            @operation(name="tasks/send")
            async def send(self) -> None:
                return None
