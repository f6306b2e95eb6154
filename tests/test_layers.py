"""The layers' imports run one way, so a newcomer can read the architecture from the folders.

``boards/`` is pure rules: it imports nothing of the engine, the gateway or settlement (the
mechanism a rule needs is handed to it, and the error hierarchy is a leaf in ``boards/``).
``engine/`` calls the boards and never the gateway; the one thing it takes from ``settlement/``
is ``settlement.commands``, the settlement component's journaled commands, which the engine's
command union must list (the component itself is named by string in ``engine/machine.py`` and
plugged in at run time, as every component is). ``settlement/`` sits above the engine and
``gateway/`` above everything. Inside a layer no modules import each other in a circle.

Every ``import`` counts: at the top, inside functions and under ``TYPE_CHECKING`` (a reader and a
type checker follow those too).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("boards", "engine", "settlement", "gateway")

# What each layer may import of the others: each one only what lies below it.
ALLOWED: dict[str, frozenset[str]] = {
    "boards": frozenset(),
    "engine": frozenset({"boards"}),
    "settlement": frozenset({"boards", "engine"}),
    "gateway": frozenset({"boards", "engine", "settlement"}),
}
# The engine's one import from above: settlement's journaled commands, a leaf of Structs.
ENGINE_FROM_SETTLEMENT = frozenset({"settlement.commands"})


def _modules() -> dict[str, Path]:
    """Every module of the four layers by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imported(name: str, path: Path) -> Iterator[str]:
    """The dotted names ``name`` imports (``from a import b`` gives ``a.b``, module or not)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".")
                if path.name != "__init__.py":
                    package = package[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _graph() -> dict[str, set[str]]:
    """Module → the project modules it imports (a name resolves to its longest module)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, set())
        for target in _imported(name, path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
    return graph


def _layer(module: str) -> str:
    return module.partition(".")[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for module, targets in sorted(_graph().items()):
        for target in sorted(targets):
            here, there = _layer(module), _layer(target)
            if here == there or there in ALLOWED[here]:
                continue
            if here == "engine" and target in ENGINE_FROM_SETTLEMENT:
                continue
            wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_the_settlement_commands_the_engine_lists_import_nothing_of_the_project():
    assert _graph()["settlement.commands"] == set()


@pytest.mark.parametrize("layer", PACKAGES)
def test_no_modules_of_a_layer_import_each_other_in_a_circle(layer: str):
    graph = _graph()
    inside = {name: {t for t in targets if _layer(t) == layer}
              for name, targets in graph.items() if _layer(name) == layer}
    assert _cycles(inside) == []


def test_the_cycle_finder_finds_a_cycle():
    # The check above must be able to fail: a circle of three and a self-contained pair.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": {"e"}}
    assert sorted(_cycles(graph)) == [["a", "b", "c"], ["e", "f"]]
