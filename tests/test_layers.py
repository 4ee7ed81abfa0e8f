"""The layering rule: each layer imports only from the layers before it.

::

    protocol -> routing -> transport -> node, sentinel -> agent (SDK) -> chat (app)

``protocol`` and ``routing`` are pure: no asyncio, websockets, logging, os or time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "famefabric"

# Rank of each package (or top-level module); an import must not go to a higher rank.
RANKS = {
    "errors": 0,
    "protocol": 1,
    "routing": 2,
    "envelope_log": 3,
    "transport": 3,
    "settings": 3,
    "clock": 3,
    "node": 4,
    "sentinel": 4,
    "agent": 5,
    "fabric": 5,
    "chat": 6,
    "testing": 7,
    "cli": 7,
    "__init__": 7,
    "__main__": 7,
}
PURE = {"protocol", "routing"}
IMPURE_MODULES = {"asyncio", "websockets", "logging", "os", "time", "socket", "threading"}


def _layer(path: Path) -> str:
    relative = path.relative_to(SOURCE)
    return relative.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


MODULES = sorted(SOURCE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SOURCE)))
def test_module_imports_only_from_lower_layers(path: Path) -> None:
    layer = _layer(path)
    assert layer in RANKS, f"{path} is in no known layer; add it to RANKS"
    for name in _imports(path):
        if not name.startswith("famefabric."):
            continue
        target = name.split(".")[1]
        assert RANKS[target] <= RANKS[layer], (
            f"{path.relative_to(SOURCE)} ({layer}) imports {name} ({target})"
        )


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if _layer(p) in PURE],
    ids=lambda p: str(p.relative_to(SOURCE)),
)
def test_pure_layers_do_no_io(path: Path) -> None:
    impure = {name for name in _imports(path) if name.split(".")[0] in IMPURE_MODULES}
    assert not impure, f"{path.relative_to(SOURCE)} imports {sorted(impure)}"
