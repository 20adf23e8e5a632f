"""The edge's live configuration: the server keeps the snapshot (``edge.keys``) current.

``LiveSnapshot.update(buyers)`` is called with the buyers a server worker serves, after each
refresh of its registry (changes made through the admin API, by any worker) and at start. It
computes the snapshot (``edge/buyers.py``, ``edge/snapshot.py``), also leaving to the server
the buyers whose match tags enforcement limits now, and writes it when it differs from the
one this worker computed last (at first: from the file). Every worker writes the same bytes
for the same buyers, atomically, so a worker whose view lags behind rewrites nothing until
its view changes; the Lua picks a new version up within a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from cookiematch.edge.buyers import EdgeBuyer, edge_buyers
from cookiematch.edge.layout import KEYS_FILE
from cookiematch.edge.snapshot import snapshot_text, snapshot_version, text_version, write_snapshot
from cookiematch.errors import ConfigError
from cookiematch.exchange import codec
from cookiematch.exchange.model import Buyer, Enforcement
from cookiematch.privacy.policy import PrivacyPolicy
from cookiematch.protocol.userid import UserIdCipher

__all__ = ["LiveSnapshot"]

log = logging.getLogger(__name__)


class LiveSnapshot:
    """The snapshot of one edge directory, rewritten when the buyers change."""

    def __init__(
        self,
        directory: Path,
        *,
        cipher: UserIdCipher,
        policy: PrivacyPolicy,
        extras_first: bool,
        enforcement: Enforcement,
        cookie_name: str,
        limited: Callable[[Buyer], bool] | None = None,
    ) -> None:
        if not directory.is_dir():
            raise ConfigError(
                f"[exchange] edge_dir {directory}: no such directory (write it first with"
                " `cookiematch edge render --out`)"
            )
        self._path = directory / KEYS_FILE
        self._cipher = cipher
        self._policy = policy
        self._extras_first = extras_first
        self._enforcement = enforcement
        self._cookie_name = cookie_name
        self._limited = limited
        self._last: str | None = None  # the version this worker computed last
        # a buyer's pieces (or why not), by its stored form (the registry rebuilds its objects)
        self._derived: dict[bytes, EdgeBuyer | str] = {}

    def update(self, buyers: Iterable[Buyer]) -> bool:
        """Write the snapshot for ``buyers`` if it changed; whether it was written."""
        answered: list[EdgeBuyer] = []
        derived: dict[bytes, EdgeBuyer | str] = {}
        limited = self._limited
        for buyer in sorted(buyers, key=lambda b: b.nid):
            if limited is not None and limited(buyer):
                continue  # enforcement limits its match tags now: the server's
            stored = codec.encode(buyer)
            found = self._derived.get(stored)
            if found is None:
                done, left = edge_buyers(
                    (buyer,),
                    cipher=self._cipher,
                    policy=self._policy,
                    extras_first=self._extras_first,
                    enforcement=self._enforcement,
                )
                found = done[0] if done else left[buyer.nid]
            derived[stored] = found
            if isinstance(found, EdgeBuyer):
                answered.append(found)
        self._derived = derived
        text = snapshot_text(self._cookie_name, answered)
        version = text_version(text)
        if self._last is None:
            self._last = snapshot_version(self._path)
        if version == self._last:
            return False
        write_snapshot(self._path, text)
        self._last = version
        log.info("edge snapshot %s written: %d buyers answered at the edge", version, len(answered))
        return True
