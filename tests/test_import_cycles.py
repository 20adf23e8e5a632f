"""No import cycle: modules of a package that import each other, directly or around a loop."""

from __future__ import annotations

import functools

import grimp
import pytest


@functools.cache
def import_cycles() -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    graph = grimp.build_graph("cookiematch")
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[frozenset[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = {stack.pop()}
            while module not in component:
                component.add(stack.pop())
            if len(component) > 1:
                cycles.append(frozenset(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


@pytest.mark.parametrize("package", ["cookiematch.config", "cookiematch.exchange"])
def test_no_import_cycle_through(package: str) -> None:
    found = [
        sorted(cycle)
        for cycle in import_cycles()
        if any(m == package or m.startswith(package + ".") for m in cycle)
    ]
    assert found == []
