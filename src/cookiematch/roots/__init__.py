"""One composition root per role: the one place where each role's objects are built.

    exchange.py   the Cookie Matching Service, the auction, the exchange's admin API
    buyer.py      the match table, the redirect handler, the bidder, the buyer's admin API
    dmp.py        the DMP: sync, ingestion, segments, exports (``DmpCore`` is shared with the CLI)

Each root reads validated configuration (``config/``), builds every shared collaborator once
(store, tables, readers, transports) and hands it to the constructors that need it; hooks
between collaborators are constructor arguments. A server worker calls the role's ``app``
factory (named in ``ROLE_FACTORIES``, for granian); the CLI commands open the same roots.
"""

from __future__ import annotations

__all__ = ["ROLE_FACTORIES"]

ROLE_FACTORIES = {
    "exchange": "cookiematch.roots.exchange:app",
    "buyer": "cookiematch.roots.buyer:app",
    "dmp": "cookiematch.roots.dmp:app",
}
"""granian app factories by role; importing this module imports no role."""
