"""The storage package's imports: no cycle, and the public names where callers import them."""

from __future__ import annotations

import grimp

import cookiematch.storage
from cookiematch.storage import base, registry


def test_no_storage_module_is_part_of_an_import_cycle() -> None:
    """Lazy imports inside functions count: the registry imports the backends, never the
    reverse (grimp reads every import statement)."""
    graph = grimp.build_graph("cookiematch")
    cycles = []
    for module in sorted(m for m in graph.modules if m.startswith("cookiematch.storage")):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append((module, *back))
    assert cycles == []


def test_the_package_exports_the_interface_and_the_openers() -> None:
    assert cookiematch.storage.Store is base.Store
    assert cookiematch.storage.Durability is base.Durability
    assert cookiematch.storage.Write is base.Write
    assert cookiematch.storage.open_store is registry.open_store
    assert cookiematch.storage.connect_store is registry.connect_store
