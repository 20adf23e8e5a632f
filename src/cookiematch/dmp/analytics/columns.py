"""Profiles (``rows.py``) flattened into the engine's tables (``tables.py``), column by column:
what every engine writes, before its own encodings (an exact integer is a Python ``int`` here;
DuckDB binds it as decimal text, Spark stores it as an ordered key)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cookiematch.dmp.analytics.rows import (
    AttributeRow,
    ConsentRow,
    EventRow,
    ExposureRow,
    MembershipRow,
    ProfileRows,
    SyncRow,
)
from cookiematch.dmp.analytics.tables import (
    ATTRIBUTES,
    CONSENT,
    EVENTS,
    EXPOSURES,
    KIND_BOOL,
    KIND_FLOAT,
    KIND_INT,
    KIND_LIST,
    KIND_STRING,
    MEMBERSHIPS,
    PROFILES,
    SYNCS,
)
from cookiematch.dmp.snapshot import AttributeValue

COLUMNS: dict[str, tuple[str, ...]] = {
    PROFILES: ("id", "expires_at"),
    ATTRIBUTES: (
        "profile", "name", "kind", "text", "num_int", "num_float", "flag", "items", "set_at",
        "expires_at",
    ),
    EVENTS: ("profile", "name", "ts", "expires_at"),
    EXPOSURES: (
        "profile", "kind", "campaign", "site", "creative", "count", "first_at", "last_at",
        "expires_at",
    ),
    SYNCS: ("profile", "partner", "partner_uid", "synced_at", "expires_at"),
    CONSENT: ("profile", "party", "decided_at", "tc_last_updated", "refused", "expires_at"),
    MEMBERSHIPS: ("profile", "segment", "joined_at", "written_at"),
}  # fmt: skip
"""Each table's columns, in the order of ``tables.SCHEMA``."""


def attribute_columns(value: AttributeValue) -> tuple[str, Any, Any, Any, Any, Any]:
    """(kind, text, num_int, num_float, flag, items) of a value."""
    if isinstance(value, bool):
        return KIND_BOOL, None, None, None, value, None
    if isinstance(value, int):
        return KIND_INT, None, value, None, None, None
    if isinstance(value, float):
        return KIND_FLOAT, None, None, value, None, None
    if isinstance(value, str):
        return KIND_STRING, value, None, None, None, None
    return KIND_LIST, None, None, None, None, list(value)


def table_columns(profiles: Sequence[ProfileRows]) -> dict[str, list[list[Any]]]:
    """Each table's rows of ``profiles``, column by column (``COLUMNS``' order)."""
    found: dict[str, list[list[Any]]] = {t: [[] for _ in cs] for t, cs in COLUMNS.items()}

    def add(table: str, *values: Any) -> None:
        for column, value in zip(found[table], values, strict=True):
            column.append(value)

    for p in profiles:
        uid = p.dmp_uid
        add(PROFILES, uid, p.expires_at)
        for name, a in p.attributes.items():
            add(ATTRIBUTES, uid, name, *attribute_columns(a.value), a.set_at, a.expires_at)
        for e in p.events:
            add(EVENTS, uid, e.name, e.ts, e.expires_at)
        for x in p.exposures:
            add(
                EXPOSURES, uid, x.kind, x.campaign, x.site, x.creative, x.count,
                x.first_at, x.last_at, x.expires_at,
            )  # fmt: skip
        for partner, s in p.syncs.items():
            add(SYNCS, uid, partner, s.partner_uid, s.synced_at, s.expires_at)
        for party, c in p.consent.items():
            add(CONSENT, uid, party, c.decided_at, c.tc_last_updated, c.refused, c.expires_at)
        for segment, m in p.memberships.items():
            add(MEMBERSHIPS, uid, segment, m.joined_at, m.written_at)
    return found


def attribute_value(
    kind: str, text: Any, num_int: Any, num_float: Any, flag: Any, items: Any
) -> AttributeValue:
    """The value an attribute row holds in the column of its ``kind`` (``attribute_columns``
    read back; ``num_int`` already an ``int``)."""
    if kind == KIND_BOOL:
        return bool(flag)
    if kind == KIND_INT:
        return int(num_int)
    if kind == KIND_FLOAT:
        return float(num_float)
    if kind == KIND_STRING:
        return str(text)
    return [str(item) for item in items or ()]


def profiles_of(rows: dict[str, list[Sequence[Any]]]) -> list[ProfileRows]:
    """Profiles from each table's rows (``COLUMNS``' order, the engine's encodings decoded):
    ``table_columns`` read back, one profile per ``profiles`` row, by uid."""
    found: dict[str, dict[str, Any]] = {}
    for uid, expires_at in rows.get(PROFILES, []):
        found[uid] = {"expires_at": expires_at, "attributes": {}, "events": [], "exposures": [],
                      "syncs": {}, "consent": {}, "memberships": {}}  # fmt: skip

    def parts(uid: str) -> dict[str, Any] | None:
        return found.get(uid)

    for uid, name, kind, text, num_int, num_float, flag, items, set_at, expires_at in rows.get(
        ATTRIBUTES, []
    ):
        if (p := parts(uid)) is not None:
            value = attribute_value(kind, text, num_int, num_float, flag, items)
            p["attributes"][name] = AttributeRow(value, set_at, expires_at)
    for uid, name, ts, expires_at in rows.get(EVENTS, []):
        if (p := parts(uid)) is not None:
            p["events"].append(EventRow(name, ts, expires_at))
    for uid, kind, campaign, site, creative, count, first_at, last_at, expires_at in rows.get(
        EXPOSURES, []
    ):
        if (p := parts(uid)) is not None:
            p["exposures"].append(
                ExposureRow(kind, campaign, int(count), site, creative, first_at, last_at,
                            expires_at)
            )  # fmt: skip
    for uid, partner, partner_uid, synced_at, expires_at in rows.get(SYNCS, []):
        if (p := parts(uid)) is not None:
            p["syncs"][partner] = SyncRow(partner_uid, synced_at, expires_at)
    for uid, party, decided_at, tc_last_updated, refused, expires_at in rows.get(CONSENT, []):
        if (p := parts(uid)) is not None:
            p["consent"][party] = ConsentRow(decided_at, tc_last_updated, refused, expires_at)
    for uid, segment, joined_at, written_at in rows.get(MEMBERSHIPS, []):
        if (p := parts(uid)) is not None:
            p["memberships"][segment] = MembershipRow(joined_at, written_at)
    return [
        ProfileRows(
            uid, p["expires_at"], p["attributes"], tuple(sorted(p["events"], key=_event_order)),
            tuple(sorted(p["exposures"], key=_exposure_order)), p["syncs"], p["consent"],
            p["memberships"],
        )
        for uid, p in sorted(found.items())
    ]  # fmt: skip


def _event_order(event: EventRow) -> tuple[str, float]:
    return event.name, event.ts


def _exposure_order(tally: ExposureRow) -> tuple[str, str, str, str]:
    return tally.kind, tally.campaign, tally.site, tally.creative
