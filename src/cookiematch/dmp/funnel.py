"""The sync funnel, measured: per partner and per client, how many pixels were handed out and
how many callbacks came back.

    client   tag_js       /tag.js served (the script; caches may hide some)
             tags_loaded  /sync requests: the container ran on a page
             pixels       sync pixels handed out to that client's pages
             callbacks    callbacks that came back attributed to the client (``c=`` param)
    partner  pixels       sync pixels handed out for the partner ("syncs fired")
             callbacks    callbacks stored
             rejected     callbacks refused: malformed, forged or stale ID, no DMP cookie
             inband       in-band redirects stored
             initiated    partner-initiated syncs: callbacks without a DMP cookie that the
                          DMP cookied and redirected to itself to verify the cookie
             initiated_stored  their second hop came back with the cookie: match stored
             cookie_refused    their second hop came back without it (no third-party cookies)

``loss = pixels - callbacks`` (not below 0) and ``loss_rate = loss / pixels``: the syncs the
DMP started (partner-initiated ones are counted apart, never in ``callbacks``).

Counting is in memory on the hot path (``Funnel``); each worker writes its cumulative counts
under its own key (``FunnelLog.flush``, every second and at shutdown) and the admin API sums
every worker's key, so totals survive restarts and agree across workers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import MutableMapping

import msgspec

from cookiematch.dmp import keys
from cookiematch.storage.base import Store

CLIENT_COUNTERS = ("tag_js", "tags_loaded", "pixels", "callbacks")
PARTNER_COUNTERS = (
    "pixels", "callbacks", "rejected", "inband", "initiated", "initiated_stored", "cookie_refused",
)  # fmt: skip


class FunnelCounts(msgspec.Struct):
    """Raw counters: ``{id: {counter: n}}`` for partners and clients, plus ``other``."""

    partners: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    clients: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    other: dict[str, int] = msgspec.field(default_factory=dict)

    def add(self, more: FunnelCounts) -> None:
        for mine, theirs in ((self.partners, more.partners), (self.clients, more.clients)):
            for name, counters in theirs.items():
                target = mine.setdefault(name, {})
                for counter, n in counters.items():
                    target[counter] = target.get(counter, 0) + n
        for counter, n in more.other.items():
            self.other[counter] = self.other.get(counter, 0) + n


class FunnelRow(msgspec.Struct, frozen=True):
    counts: dict[str, int]
    loss: int
    loss_rate: float


class FunnelReport(msgspec.Struct, frozen=True):
    """What the admin API answers at ``/admin/v1/funnel`` and the demo prints."""

    partners: dict[str, FunnelRow]
    clients: dict[str, FunnelRow]
    other: dict[str, int]


def _row(counts: dict[str, int], names: tuple[str, ...]) -> FunnelRow:
    full = {name: counts.get(name, 0) for name in names}
    loss = max(full["pixels"] - full["callbacks"], 0)
    rate = round(loss / full["pixels"], 4) if full["pixels"] else 0.0
    return FunnelRow(full, loss, rate)


def report(counts: FunnelCounts, partner_ids: list[str], client_ids: list[str]) -> FunnelReport:
    """Every configured partner and client, with zeros where nothing was counted."""
    return FunnelReport(
        partners={p: _row(counts.partners.get(p, {}), PARTNER_COUNTERS) for p in partner_ids},
        clients={c: _row(counts.clients.get(c, {}), CLIENT_COUNTERS) for c in client_ids},
        other=dict(counts.other),
    )


FunnelKey = tuple[str, str, str]
"""``(scope, id, counter)``: scope ``partner``, ``client`` or ``other`` (id ``""``)."""


class Funnel:
    """This worker's counters (cumulative since the worker started), kept in ``counts``: a
    plain dict by default; the server passes one that ``/metrics`` adds up over its workers."""

    def __init__(self, counts: MutableMapping[FunnelKey, int] | None = None) -> None:
        self._counts: MutableMapping[FunnelKey, int] = Counter() if counts is None else counts
        self.changed = False

    def partner(self, partner_id: str, counter: str, n: int = 1) -> None:
        self._counts[("partner", partner_id, counter)] += n
        self.changed = True

    def client(self, client_id: str, counter: str, n: int = 1) -> None:
        self._counts[("client", client_id, counter)] += n
        self.changed = True

    def other(self, counter: str, n: int = 1) -> None:
        self._counts[("other", "", counter)] += n
        self.changed = True

    def snapshot(self) -> FunnelCounts:
        counts = FunnelCounts()
        scopes = {"partner": counts.partners, "client": counts.clients}
        for (scope, name, counter), n in list(self._counts.items()):
            if scope == "other":
                counts.other[counter] = n
            else:
                scopes[scope].setdefault(name, {})[counter] = n
        return counts


_decoder = msgspec.json.Decoder(FunnelCounts)


class FunnelLog:
    """Persists one worker's counters and sums every worker's."""

    def __init__(self, store: Store, worker: str, funnel: Funnel) -> None:
        self._store = store
        self._key = keys.funnel_key(worker)
        self.funnel = funnel

    async def flush(self) -> None:
        if self.funnel.changed:
            self.funnel.changed = False
            await self._store.set(self._key, msgspec.json.encode(self.funnel.snapshot()))

    async def total(self) -> FunnelCounts:
        """This worker's counts flushed, then the sum over every worker's key."""
        await self.flush()
        total = FunnelCounts()
        async for _, value in self._store.scan(keys.FUNNEL_PREFIX):
            try:
                total.add(_decoder.decode(value))
            except msgspec.DecodeError:
                continue
        return total
