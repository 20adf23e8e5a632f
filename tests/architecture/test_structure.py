"""The code's structure as promised: no import cycle, the error tree of ``errors.py`` as drawn
in its docstring, and docs that cite only files that exist."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import grimp

import cookiematch
from cookiematch import errors

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(cookiematch.__file__).resolve().parent


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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


def _squashed(graph: grimp.ImportGraph, package: str) -> dict[str, set[str]]:
    """Imports between the direct children of ``package`` (each child with its descendants)."""
    children = sorted(graph.find_children(package))

    def owner(module: str) -> str | None:
        for child in children:
            if module == child or module.startswith(child + "."):
                return child
        return None

    edges: dict[str, set[str]] = {child: set() for child in children}
    for module in graph.find_descendants(package):
        source = owner(module)
        for imported in graph.find_modules_directly_imported_by(module):
            target = owner(imported)
            if source and target and source != target:
                edges[source].add(target)
    return edges


def test_no_import_cycle_between_modules_or_sibling_packages() -> None:
    graph = grimp.build_graph("cookiematch")
    modules = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _cycles(modules) == []
    packages = [m for m in graph.modules if graph.find_children(m)]
    found = {p: _cycles(_squashed(graph, p)) for p in packages}
    assert {p: c for p, c in found.items() if c} == {}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _drawn_tree() -> dict[str, str | None]:
    """``{class name: parent name}`` from the tree in the module docstring."""
    parents: dict[str, str | None] = {}
    path: list[str] = []
    doc = errors.__doc__ or ""
    tree = doc[doc.index("\nCookiematchError\n") + 1 :]
    for line in tree.splitlines():
        match = re.match(r"^([│ ]*(?:├── |└── )?)([A-Z]\w+)\b", line)
        if match is None:
            continue
        depth = len(match.group(1)) // 4
        del path[depth:]
        parents[match.group(2)] = path[-1] if path else None
        path.append(match.group(2))
    return parents


def test_the_error_tree_in_the_docstring_is_the_class_tree() -> None:
    classes = {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.CookiematchError) and cls.__module__ == errors.__name__
    }
    actual = {
        name: None if cls is errors.CookiematchError else cls.__bases__[0].__name__
        for name, cls in classes.items()
    }
    assert _drawn_tree() == actual


CITED = re.compile(r"`([\w./-]+\.(?:py|md|toml|txt|json|sh))`")


def _resolves(cited: str) -> bool:
    if cited.startswith("../"):  # outside the repository: not there for a user's clone
        return False
    candidates = [ROOT / cited, PACKAGE / cited, ROOT / "docs" / cited, ROOT / "tests" / cited]
    return any(path.exists() for path in candidates)


def test_docs_cite_only_files_that_exist() -> None:
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = {
        doc.name: sorted({c for c in CITED.findall(doc.read_text()) if not _resolves(c)})
        for doc in documents
    }
    assert {name: cited for name, cited in missing.items() if cited} == {}


def test_the_readme_lists_every_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    docs = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert [name for name in docs if f"docs/{name}" not in readme] == []
