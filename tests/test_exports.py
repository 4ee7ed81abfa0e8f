"""Each package's ``__all__`` lists exactly the names it re-exports."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "famefabric",
    "famefabric.agent",
    "famefabric.chat",
    "famefabric.node",
    "famefabric.protocol",
    "famefabric.routing",
    "famefabric.sentinel",
    "famefabric.transport",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_exist_and_are_public(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert sorted(exported) == sorted(set(exported)), "duplicates in __all__"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names {item!r}, which it does not define"
    defined = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_") and getattr(value, "__module__", "").startswith("famefabric")
    }
    assert defined <= set(exported), (
        f"{name} defines public names missing from __all__: {sorted(defined - set(exported))}"
    )


def test_errors_are_exceptions_not_base_exceptions() -> None:
    import famefabric.errors as errors

    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, Exception), value
    assert issubclass(errors.OperationTimeout, TimeoutError)
