"""The package's architecture, checked: layers import only downwards and no module cycle exists.

    ground (flowtel._*.py) <- entities <- delivery <- tracing <- (exporters, integrations) <- facade

Imports under ``if TYPE_CHECKING:`` are ignored (they do not run); imports inside functions count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "flowtel"

# layer -> layers it may import (besides itself and the ground floor)
ALLOWED = {
    "entities": set(),
    "delivery": {"entities"},
    "tracing": {"entities", "delivery"},
    "exporters": {"entities", "delivery", "tracing"},
    "integrations": {"entities", "delivery", "tracing"},
}
GROUND_MAY_IMPORT: set[str] = set()  # flowtel/_*.py import no layer
FACADE = {"flowtel", "flowtel.cli", "flowtel.testing", "flowtel.__main__", "flowtel._stats"}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str) -> set[str]:
    path = MODULES[module]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(_known(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:  # `from pkg import module` depends on the module, not on pkg
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else _known(base))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {m for m in found if m and m.startswith("flowtel") and m != module}


def _known(name: str) -> str:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if module in FACADE or len(parts) == 1:
        return "facade"
    if parts[1] in ALLOWED:
        return parts[1]
    if parts[1] == "cli":
        return "facade"
    return "ground"


GRAPH = {m: _imports(m) for m in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_go_down(module: str) -> None:
    layer = _layer(module)
    if layer == "facade":
        return
    for dep in GRAPH[module]:
        dep_layer = _layer(dep)
        if dep_layer == "ground" or dep_layer == layer:
            continue
        if layer == "ground":
            assert dep_layer in GROUND_MAY_IMPORT, f"{module} (ground floor) imports {dep}"
        else:
            assert dep_layer in ALLOWED[layer], f"{module} ({layer}) imports {dep} ({dep_layer})"


def test_no_import_cycles() -> None:
    graph = {m: {d for d in deps if not _parent_child(m, d)} for m, deps in GRAPH.items()}
    cycles = _strongly_connected(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def _parent_child(a: str, b: str) -> bool:
    """A package's __init__ importing its own children (or a child its package) is not a cycle of design."""
    return (b.startswith(a + ".") and MODULES[a].name == "__init__.py") or (
        a.startswith(b + ".") and MODULES[b].name == "__init__.py"
    )


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in graph:
        if v not in index:
            strong(v)
    return result


def test_the_checker_sees_a_cycle() -> None:
    assert _strongly_connected({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
