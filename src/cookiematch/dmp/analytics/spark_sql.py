"""What Spark SQL writes differently: the rule compiler's dialect (``rules_sql.Dialect``), the
tables' Parquet schema, and the live relations (``tables.LIVE_AT``) in Spark's words.

Spark has no integer type of any size (``DECIMAL`` stops at 38 digits), so an attribute's
integer is held as an **ordered key**: a string whose byte order is the integers' order
(``ordered_integer``), compared and equated as text, exact at any size. Spark's equality of
``-0.0`` and ``0.0`` depends on the plan (Parquet statistics, constant folding), so a float is
stored and bound with ``-0.0`` made ``0.0``: the same number to every comparison in Python.
Spark orders NaN above infinity, as DuckDB does; the compiler guards it (``is_nan``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from cookiematch.dmp.analytics.rules_sql import Dialect
from cookiematch.dmp.analytics.tables import (
    ATTRIBUTES,
    CONSENT,
    EVENTS,
    EXPORTED,
    EXPOSURES,
    LIVE_ATTRIBUTES,
    LIVE_EVENTS,
    LIVE_EXPOSURES,
    LIVE_PROFILES,
    LIVE_SYNCS,
    MEMBERSHIPS,
    PROFILES,
    SYNCS,
)

_WIDTH = 6  # digits of an ordered key's length: integers of up to 999,999 digits
_NINES = str.maketrans("0123456789", "9876543210")


def ordered_integer(value: int) -> str:
    """A key whose string order is the integers' order: ``1``, the length of the decimal
    digits, the digits; for a negative number ``0`` and the nines' complements of both."""
    digits = str(abs(value))
    if value >= 0:
        return f"1{len(digits):0{_WIDTH}d}{digits}"
    return f"0{10**_WIDTH - 1 - len(digits):0{_WIDTH}d}{digits.translate(_NINES)}"


def integer_of(key: str) -> int:
    """The integer of an ``ordered_integer`` key."""
    digits = key[1 + _WIDTH :]
    return int(digits) if key[0] == "1" else -int(digits.translate(_NINES))


def plain_double(value: float | None) -> float | None:
    """``value`` with ``-0.0`` as ``0.0`` (equal in Python; not always in Spark)."""
    return None if value is None else value + 0.0


class SparkDialect(Dialect):
    """Spark SQL: named parameter markers, ordered integer keys, ``array_contains``."""

    name = "spark"

    def placeholder(self, index: int) -> str:
        return f":p{index}"

    def integer(self, placeholder: str) -> str:
        return placeholder

    def integer_value(self, value: int) -> object:
        return ordered_integer(value)

    def contains(self, array: str, item: str) -> str:
        return f"array_contains({array}, {item})"

    def double_value(self, value: float) -> object:
        return plain_double(value)


SPARK = SparkDialect()


def arguments(params: Sequence[object]) -> dict[str, object]:
    """A compiled query's parameters as Spark binds them (``SPARK.placeholder``'s names)."""
    return {f"p{i}": value for i, value in enumerate(params)}


_STRING, _DOUBLE = pa.string(), pa.float64()

SCHEMAS: dict[str, pa.Schema] = {
    PROFILES: pa.schema([("id", _STRING), ("expires_at", _DOUBLE)]),
    ATTRIBUTES: pa.schema([
        ("profile", _STRING), ("name", _STRING), ("kind", _STRING), ("text", _STRING),
        ("num_int", _STRING), ("num_float", _DOUBLE), ("flag", pa.bool_()),
        ("items", pa.list_(_STRING)), ("set_at", _DOUBLE), ("expires_at", _DOUBLE),
    ]),
    EVENTS: pa.schema([
        ("profile", _STRING), ("name", _STRING), ("ts", _DOUBLE), ("expires_at", _DOUBLE),
    ]),
    EXPOSURES: pa.schema([
        ("profile", _STRING), ("kind", _STRING), ("campaign", _STRING), ("site", _STRING),
        ("creative", _STRING), ("count", pa.int64()), ("first_at", _DOUBLE),
        ("last_at", _DOUBLE), ("expires_at", _DOUBLE),
    ]),
    SYNCS: pa.schema([
        ("profile", _STRING), ("partner", _STRING), ("partner_uid", _STRING),
        ("synced_at", _DOUBLE), ("expires_at", _DOUBLE),
    ]),
    CONSENT: pa.schema([
        ("profile", _STRING), ("party", _STRING), ("decided_at", _DOUBLE),
        ("tc_last_updated", _DOUBLE), ("refused", pa.bool_()), ("expires_at", _DOUBLE),
    ]),
    MEMBERSHIPS: pa.schema([
        ("profile", _STRING), ("segment", _STRING), ("joined_at", _DOUBLE),
        ("written_at", _DOUBLE),
    ]),
    EXPORTED: pa.schema([
        ("destination", _STRING), ("segment", _STRING), ("profile", _STRING),
        ("sent_id", _STRING), ("sent_at", _DOUBLE),
    ]),
}  # fmt: skip
"""Each table's Parquet schema: ``tables.SCHEMA``'s columns, an integer as its ordered key,
an exposure count as a 64-bit integer."""

_DDL = {_STRING: "STRING", _DOUBLE: "DOUBLE", pa.bool_(): "BOOLEAN", pa.int64(): "BIGINT"}


def ddl(schema: pa.Schema) -> str:
    """``schema`` as Spark's DDL (``spark.read.schema`` takes it)."""
    return ", ".join(
        f"`{f.name}` {'ARRAY<STRING>' if pa.types.is_list(f.type) else _DDL[f.type]}"
        for f in schema
    )


_LIVE = "(expires_at IS NULL OR expires_at > :now)"

LIVE_AT = {
    LIVE_PROFILES: f"SELECT id FROM {PROFILES} WHERE {_LIVE}",
    LIVE_ATTRIBUTES: "SELECT profile, name, kind, text, num_int, num_float, flag, items "
    f"FROM {ATTRIBUTES} WHERE {_LIVE}",
    LIVE_EVENTS: "SELECT profile, name, ts FROM ("
    "SELECT profile, name, ts, "
    "row_number() OVER (PARTITION BY profile, name ORDER BY ts DESC) AS newest "
    f"FROM (SELECT DISTINCT profile, name, ts FROM {EVENTS} WHERE {_LIVE})"
    ") WHERE newest <= :max_events",
    LIVE_EXPOSURES: f"SELECT profile, kind, campaign, count FROM {EXPOSURES} WHERE {_LIVE}",
    LIVE_SYNCS: f"SELECT profile, partner FROM {SYNCS} WHERE {_LIVE}",
}
"""The live relations (``tables.LIVE_AT``), by name; parameters ``:now`` and ``:max_events``."""
