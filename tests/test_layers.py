"""The layering rule: each layer imports only from the layers before it, and nothing hides a cycle.

::

    protocol -> routing -> transport -> node, sentinel -> agent (SDK) -> fabric -> chat (app)

``protocol`` and ``routing`` are pure: no asyncio, websockets, logging, os or time.
Every ``famefabric`` import sits at the top of its module, so the import graph
is what the file says; an import inside a function is allowed only where it
defers an optional, heavy part, and :data:`LAZY_IMPORTS` says why.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "famefabric"

# Rank of each package (or top-level module); an import must not go to a higher rank.
# Equal ranks are independent layers: they must not import each other either.
RANKS = {
    "errors": 0,
    "clock": 0,
    "options": 1,
    "protocol": 1,
    "routing": 2,
    "observability": 1,
    "envelope_log": 3,
    "transport": 3,
    "settings": 2,
    "log_limits": 2,
    "security": 3,
    "node": 4,
    "sentinel": 4,
    "agent": 5,
    "fabric": 6,
    "chat": 7,
    "testing": 8,
    "gateway": 8,
    "cli": 9,
    "__init__": 10,
    "__main__": 10,
}
PURE = {"protocol", "routing"}
IMPURE_MODULES = {"asyncio", "websockets", "logging", "os", "time", "socket", "threading"}

# Function-level imports of famefabric modules that are allowed, and why.
# Key: (module path relative to famefabric/, imported module).
LAZY_IMPORTS = {
    ("cli.py", "famefabric.settings"): "the CLI imports each command's parts only when it runs",
    ("cli.py", "famefabric.sentinel"): "the CLI imports each command's parts only when it runs",
    ("cli.py", "famefabric.security"): "the CLI imports each command's parts only when it runs",
    ("cli.py", "famefabric.chat.service"): "the chat agent and its LLM client load on demand",
    ("cli.py", "famefabric.chat.settings"): "the chat agent and its LLM client load on demand",
    ("cli.py", "famefabric.gateway.server"): "the gateway and its HTTP stack load on demand",
    ("cli.py", "famefabric.gateway.settings"): "the gateway and its HTTP stack load on demand",
    ("cli.py", "famefabric.chat.client"): "the chat client loads on demand",
    ("cli.py", "famefabric.chat.conversation"): "conversation commands load the chat app on demand",
    ("cli.py", "famefabric.chat.store"): "conversation commands load the stores on demand",
    ("cli.py", "famefabric.chat.listing"): "conversation commands load the stores on demand",
    ("cli.py", "famefabric.chat.commands"): "the chat's help text loads with the chat app",
    (
        "cli.py",
        "famefabric.chat.stores._contract",
    ): "conversation commands load the stores on demand",
    ("chat/store.py", "famefabric.chat.stores.redis"): "the Redis client is an optional dependency",
}


def _layer(path: Path) -> str:
    relative = path.relative_to(SOURCE)
    return relative.parts[0].removesuffix(".py")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["famefabric", *parts])


def _resolve(module: str, names: list[str]) -> list[str]:
    """``from module import names``: the submodules named, else the module itself."""
    targets = []
    for name in names:
        candidate = f"{module}.{name}"
        relative = Path(*candidate.split(".")[1:])
        if (SOURCE / relative).with_suffix(".py").exists() or (SOURCE / relative).is_dir():
            targets.append(candidate)
    return targets or [module]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """Collects famefabric imports by where they are: module level, type checking, functions."""

    def __init__(self) -> None:
        self.runtime: list[str] = []
        self.typing: list[str] = []
        self.lazy: list[tuple[str, int]] = []
        self._depth = 0
        self._typing = 0

    def _add(self, modules: list[str], line: int) -> None:
        for module in modules:
            if self._depth:
                self.lazy.append((module, line))
            elif self._typing:
                self.typing.append(module)
            else:
                self.runtime.append(module)

    def visit_Import(self, node: ast.Import) -> None:
        self._add([alias.name for alias in node.names], node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and node.level == 0:
            names = [alias.name for alias in node.names]
            modules = (
                _resolve(node.module, names)
                if node.module.startswith("famefabric")
                else [node.module]
            )
            self._add(modules, node.lineno)

    def _function(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function
    visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._typing += 1
            for child in node.body:
                self.visit(child)
            self._typing -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)


def _collect(path: Path) -> _Imports:
    visitor = _Imports()
    visitor.visit(ast.parse(path.read_text(), filename=str(path)))
    return visitor


MODULES = sorted(SOURCE.rglob("*.py"))
IMPORTS = {path: _collect(path) for path in MODULES}


def _ours(names: list[str]) -> list[str]:
    return [name for name in names if name.startswith("famefabric.")]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SOURCE)))
def test_module_imports_only_from_lower_layers(path: Path) -> None:
    layer = _layer(path)
    assert layer in RANKS, f"{path} is in no known layer; add it to RANKS"
    imports = IMPORTS[path]
    everything = imports.runtime + imports.typing + [name for name, _ in imports.lazy]
    for name in _ours(everything):
        target = name.split(".")[1]
        if target == layer:
            continue
        assert RANKS[target] < RANKS[layer], (
            f"{path.relative_to(SOURCE)} ({layer}, rank {RANKS[layer]}) imports {name} "
            f"({target}, rank {RANKS[target]}): only lower layers may be imported"
        )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SOURCE)))
def test_no_function_level_import_hides_a_cycle(path: Path) -> None:
    relative = str(path.relative_to(SOURCE))
    for name, line in IMPORTS[path].lazy:
        if not name.startswith("famefabric"):
            continue
        assert (relative, name) in LAZY_IMPORTS, (
            f"{relative}:{line} imports {name} inside a function. Import it at the top of the "
            "module; if that makes a cycle, move the code to the layer that composes both. "
            "Only an optional heavy part may load lazily: add it to LAZY_IMPORTS with the reason."
        )


def test_lazy_imports_are_explained() -> None:
    for (module, name), reason in LAZY_IMPORTS.items():
        assert (SOURCE / module).exists(), module
        assert name.startswith("famefabric.") and len(reason) > 20, (module, name)


def test_every_allowed_lazy_import_is_still_made() -> None:
    made = {
        (str(path.relative_to(SOURCE)), name) for path, i in IMPORTS.items() for name, _ in i.lazy
    }
    stale = sorted(set(LAZY_IMPORTS) - made)
    assert not stale, f"LAZY_IMPORTS allows imports no module makes any more; remove {stale}"


def test_module_level_imports_have_no_cycle() -> None:
    graph = {_module_name(path): set(_ours(imports.runtime)) for path, imports in IMPORTS.items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, "import cycle: " + " -> ".join(
            [*visiting[visiting.index(module) :], module]
        )
        visiting.append(module)
        for target in sorted(graph.get(module, ())):
            # A package's __init__ re-exports its submodules: importing a
            # submodule runs it first, which is not a cycle of the submodule.
            if module.startswith(target + "."):
                continue
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_checks_see_a_hidden_cycle(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "from famefabric.errors import FabricError\n"
        "if TYPE_CHECKING:\n"
        "    from famefabric.node import Node\n"
        "def late() -> None:\n"
        "    from famefabric.fabric import current_fabric\n"
    )
    imports = _collect(sample)
    assert _ours(imports.runtime) == ["famefabric.errors"]
    assert imports.typing == ["famefabric.node"]
    assert imports.lazy == [("famefabric.fabric", 6)]


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if _layer(p) in PURE],
    ids=lambda p: str(p.relative_to(SOURCE)),
)
def test_pure_layers_do_no_io(path: Path) -> None:
    imports = IMPORTS[path]
    impure = {
        name for name in imports.runtime + imports.typing if name.split(".")[0] in IMPURE_MODULES
    }
    assert not impure, f"{path.relative_to(SOURCE)} imports {sorted(impure)}"
