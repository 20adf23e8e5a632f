"""The sync funnel, measured: per partner and per client, how many pixels were handed out and
how many callbacks came back.

    client   tag_js       /tag.js served (the script; caches may hide some)
             tags_loaded  /sync requests: the container ran on a page
             pixels       sync pixels handed out to that client's pages
             callbacks    callbacks that came back attributed to the client (``c=`` param)
    partner  pixels       sync pixels handed out for the partner ("syncs fired")
             callbacks    callbacks stored
             callback_failed  callbacks whose store call failed or passed its deadline
                          (answered with the pixel all the same; not in ``callbacks``)
             rejected     callbacks refused: malformed, forged or stale ID, no DMP cookie
             inband       in-band redirects stored
             inband_values   key-values those redirects carried (stored)
             inband_refused  in-band redirects refused (too large, bad data, no cookie, ...)
             inband_failed   in-band redirects whose store call failed or passed its
                             deadline (answered with the pixel all the same)
             inband_failed_values  key-values those redirects carried (not known stored)
             initiated    partner-initiated syncs: callbacks without a DMP cookie that the
                          DMP cookied and redirected to itself to verify the cookie
             initiated_stored  their second hop came back with the cookie: match stored
             cookie_refused    their second hop came back without it (no third-party cookies)
    ingest   records, accepted, pending, resolved, rejected, expired, values: the partner's
             records ingested server to server (HTTP, pull, files; ``dmp/ingest/``)
    reject   why ingested records were rejected, by ``reject_code``

``loss = pixels - callbacks`` (not below 0) and ``loss_rate = loss / pixels``: the syncs the
DMP started (partner-initiated ones are counted apart, never in ``callbacks``). The report's
``delivery`` puts the partner's two paths side by side (``PathDelivery``): what the DMP saw
offered and what it applied to profiles, in records and in attribute values.

Counting is in memory on the hot path (``Funnel``); ``dmp/funnel_log.py`` keeps the counts in
the store, so totals survive restarts and agree across workers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import MutableMapping

import msgspec

from cookiematch.tally import adder

CLIENT_COUNTERS = ("tag_js", "tags_loaded", "pixels", "callbacks")
PARTNER_COUNTERS = (
    "pixels", "callbacks", "callback_failed", "rejected", "inband", "initiated",
    "initiated_stored", "cookie_refused",
)  # fmt: skip
INGEST_COUNTERS = ("records", "accepted", "pending", "resolved", "rejected", "expired", "values")


class FunnelCounts(msgspec.Struct):
    """Raw counters: ``{id: {counter: n}}`` for partners, clients, ingestion outcomes and
    ingestion rejects (by reason), plus ``other``; ``seen``: when a process stored them
    (``dmp/funnel_log.py``)."""

    partners: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    clients: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    other: dict[str, int] = msgspec.field(default_factory=dict)
    ingest: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    rejects: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    seen: float | None = None

    def _maps(self) -> tuple[dict[str, dict[str, int]], ...]:
        return (self.partners, self.clients, self.ingest, self.rejects)

    def add(self, more: FunnelCounts, sign: int = 1) -> None:
        """Add ``more``'s counters (``sign=-1``: take them away; a counter at 0 is dropped)."""
        for mine, theirs in zip(self._maps(), more._maps(), strict=True):
            for name, counters in theirs.items():
                target = mine.setdefault(name, {})
                _add(target, counters, sign)
                if not target:
                    del mine[name]
        _add(self.other, more.other, sign)

    def copy(self) -> FunnelCounts:
        copied = FunnelCounts()
        copied.add(self)
        return copied


def _add(target: dict[str, int], counters: dict[str, int], sign: int) -> None:
    for counter, n in counters.items():
        total = target.get(counter, 0) + sign * n
        if total:
            target[counter] = total
        else:
            target.pop(counter, None)


class FunnelRow(msgspec.Struct, frozen=True):
    counts: dict[str, int]
    loss: int
    loss_rate: float


class IngestionRow(msgspec.Struct, frozen=True):
    """A partner's server-to-server records by outcome (``INGEST_COUNTERS``), and the
    rejected ones by reason."""

    counts: dict[str, int]
    rejected_by_reason: dict[str, int]


class PathDelivery(msgspec.Struct, frozen=True):
    """One path of a partner's data, as the DMP saw it.

    in-band: ``sent`` = the partner's sync pixels handed out (each a redirect that could carry
    the data), ``arrived`` = in-band redirects stored, ``refused`` = refused ones, ``values`` =
    key-values stored, ``failed`` = redirects that reached the DMP but whose store call failed
    (or passed its deadline: such a write may still land), ``failed_values`` = their key-values;
    so the key-values that reached the DMP are ``values + failed_values``. S2S: ``sent`` =
    records received, ``arrived`` = records applied to a profile (accepted, or resolved when
    their sync came), ``refused`` = rejected, ``waiting`` = pending records not resolved yet,
    ``values`` = attribute values applied; a batch that fails is answered with an error to the
    partner, who sends it again: ``failed`` is 0.
    """

    sent: int
    arrived: int
    refused: int
    waiting: int
    values: int
    arrival_rate: float
    failed: int = 0
    failed_values: int = 0


class Delivery(msgspec.Struct, frozen=True):
    """Pixel-to-pixel versus server-to-server for one partner; a path it never used is null."""

    inband: PathDelivery | None
    s2s: PathDelivery | None


class FunnelReport(msgspec.Struct, frozen=True):
    """What the admin API answers at ``/admin/v1/funnel`` and the demo prints."""

    partners: dict[str, FunnelRow]
    clients: dict[str, FunnelRow]
    other: dict[str, int]
    ingestion: dict[str, IngestionRow] = msgspec.field(default_factory=dict)
    delivery: dict[str, Delivery] = msgspec.field(default_factory=dict)


def _row(counts: dict[str, int], names: tuple[str, ...]) -> FunnelRow:
    full = {name: counts.get(name, 0) for name in names}
    loss = max(full["pixels"] - full["callbacks"], 0)
    rate = round(loss / full["pixels"], 4) if full["pixels"] else 0.0
    return FunnelRow(full, loss, rate)


def _path(
    sent: int, arrived: int, refused: int, waiting: int, values: int, failed: int = 0,
    failed_values: int = 0,
) -> PathDelivery:  # fmt: skip
    rate = round(arrived / sent, 4) if sent else 0.0
    return PathDelivery(sent, arrived, refused, waiting, values, rate, failed, failed_values)


def _delivery(sync: dict[str, int], ingest: dict[str, int]) -> Delivery:
    inband = None
    if any(sync.get(name, 0) for name in ("inband", "inband_refused", "inband_failed")):
        inband = _path(
            sync.get("pixels", 0), sync.get("inband", 0), sync.get("inband_refused", 0), 0,
            sync.get("inband_values", 0), sync.get("inband_failed", 0),
            sync.get("inband_failed_values", 0),
        )  # fmt: skip
    s2s = None
    if ingest.get("records", 0):
        resolved = ingest.get("resolved", 0)
        waiting = max(ingest.get("pending", 0) - resolved, 0)
        s2s = _path(
            ingest["records"], ingest.get("accepted", 0) + resolved, ingest.get("rejected", 0),
            waiting, ingest.get("values", 0),
        )  # fmt: skip
    return Delivery(inband, s2s)


def report(counts: FunnelCounts, partner_ids: list[str], client_ids: list[str]) -> FunnelReport:
    """Every configured partner and client, with zeros where nothing was counted."""
    partners = {p: counts.partners.get(p, {}) for p in partner_ids}
    ingest = {p: counts.ingest.get(p, {}) for p in partner_ids}
    return FunnelReport(
        partners={p: _row(partners[p], PARTNER_COUNTERS) for p in partner_ids},
        clients={c: _row(counts.clients.get(c, {}), CLIENT_COUNTERS) for c in client_ids},
        other=dict(counts.other),
        ingestion={
            p: IngestionRow(
                {name: ingest[p].get(name, 0) for name in INGEST_COUNTERS},
                dict(sorted(counts.rejects.get(p, {}).items())),
            )
            for p in partner_ids
        },
        delivery={p: _delivery(partners[p], ingest[p]) for p in partner_ids},
    )


FunnelKey = tuple[str, str, str]
"""``(scope, id, counter)``: scope ``partner``, ``client``, ``ingest`` (id: the partner,
counter: an outcome), ``reject`` (id: the partner, counter: a reason) or ``other`` (id
``""``)."""


class Funnel:
    """This worker's counters (cumulative since the worker started), kept in ``counts``: a
    plain dict by default; the server passes one that ``/metrics`` adds up over its workers."""

    def __init__(self, counts: MutableMapping[FunnelKey, int] | None = None) -> None:
        self._counts: MutableMapping[FunnelKey, int] = Counter() if counts is None else counts
        self._add = adder(self._counts)
        self.changed = False

    def partner(self, partner_id: str, counter: str, n: int = 1) -> None:
        self._add(("partner", partner_id, counter), n)
        self.changed = True

    def client(self, client_id: str, counter: str, n: int = 1) -> None:
        self._add(("client", client_id, counter), n)
        self.changed = True

    def other(self, counter: str, n: int = 1) -> None:
        self._add(("other", "", counter), n)
        self.changed = True

    def ingested(self, partner_id: str, counts: dict[str, int]) -> None:
        """Ingestion outcomes (``INGEST_COUNTERS``) of the partner's records; zeros skipped."""
        for outcome, n in counts.items():
            if n:
                self._add(("ingest", partner_id, outcome), n)
                self.changed = True

    def ingest_rejected(self, partner_id: str, reasons: dict[str, int]) -> None:
        """Rejected records of the partner by reason code (``ingest/rejects.reject_code``)."""
        for reason, n in reasons.items():
            if n:
                self._add(("reject", partner_id, reason), n)
                self.changed = True

    def snapshot(self) -> FunnelCounts:
        counts = FunnelCounts()
        scopes = {
            "partner": counts.partners,
            "client": counts.clients,
            "ingest": counts.ingest,
            "reject": counts.rejects,
        }
        for (scope, name, counter), n in list(self._counts.items()):
            if scope == "other":
                counts.other[counter] = n
            else:
                scopes[scope].setdefault(name, {})[counter] = n
        return counts
