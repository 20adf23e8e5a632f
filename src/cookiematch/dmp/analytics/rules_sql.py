"""Segment rules (``dmp/segments/rules.py``) compiled to one SQL query over the live relations
(``tables.py``): the ids of the profiles the rule holds for at ``now``.

Each node becomes a predicate on ``live_profiles.id``: a leaf is ``id IN (SELECT profile ...)``
(uncorrelated, so every engine plans it as a semi-join), ``all``/``any``/``not`` are ``AND``/
``OR``/``NOT``; nothing is ever NULL. Values are bound parameters, never spliced into the text;
what differs between engines (placeholders, list functions, the exact integer type, how a
float is bound) is the ``Dialect``'s: DuckDB's here, Spark's in ``spark_sql.py``.

The SQL agrees with ``rule.matches()`` exactly, corners included (a property test holds it to
that, tests/dmp/analytics/test_rules_sql.py):

- ``true`` is not ``1``: a boolean equals only a boolean (``kind = 'bool'``).
- numbers compare as Python compares ``int`` and ``float``, exactly: integers are held as
  ``BIGNUM`` (any size); an integer against a float bound compares with the bound's floor or
  ceiling, a float against an integer bound with the nearest double and the right strictness.
- NaN equals nothing and orders with nothing (SQL engines sort it above infinity: guarded).
- a list (of strings) matches ``eq``/``in`` when an element does, ``ne``/``not_in`` when none
  does (an empty list: never, and always); ordering operators never hold for lists or strings.
- ``ne``/``not_in`` hold for a profile without the attribute; ``exists`` tests presence.
- an event counts among the newest ``max_events_per_name`` live timestamps of its name (what
  ``ProfileReader`` returns), inside ``[now - within_days days, now]``, both edges included;
  ``at_least = 0`` holds for a profile without the event.
- count bounds (``at_least``, ``at_most``) beyond 2^63 - 1 are taken as 2^63 - 1: exact for
  any count below that.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

from cookiematch.clock import SECONDS_PER_DAY
from cookiematch.dmp.analytics.tables import (
    KIND_BOOL,
    KIND_FLOAT,
    KIND_INT,
    KIND_LIST,
    KIND_STRING,
    LIVE_ATTRIBUTES,
    LIVE_EVENTS,
    LIVE_EXPOSURES,
    LIVE_PROFILES,
    LIVE_SYNCS,
)
from cookiematch.dmp.segments.rules import (
    All,
    AnyOf,
    Attribute,
    Event,
    Exposed,
    Not,
    Op,
    Rule,
    Scalar,
    Synced,
)

MAX_COUNT = 2**63 - 1
_FLIP: dict[str, str] = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class Dialect:
    """How an engine writes what standard SQL leaves open. This one is DuckDB's."""

    name = "duckdb"

    def placeholder(self, index: int) -> str:
        """The ``index``-th (from 0) bound parameter."""
        return f"${index + 1}"

    def integer(self, placeholder: str) -> str:
        """An exact integer parameter, bound as its decimal text (``integer_value``)."""
        return f"CAST({placeholder} AS BIGNUM)"

    def integer_value(self, value: int) -> object:
        return str(value)

    def contains(self, array: str, item: str) -> str:
        return f"list_contains({array}, {item})"

    def is_nan(self, expr: str) -> str:
        return f"isnan({expr})"

    def double_value(self, value: float) -> object:
        """A float bound against the ``num_float`` column."""
        return value


DUCKDB = Dialect()


@dataclass(frozen=True, slots=True)
class Query:
    sql: str
    params: tuple[object, ...]


def compile_rule(rule: Rule, now: float, dialect: Dialect = DUCKDB) -> Query:
    """``SELECT id FROM live_profiles WHERE …``: the profiles ``rule`` holds for at ``now``."""
    compiler = _Compiler(dialect, now)
    predicate = compiler.rule(rule)
    # the table named an alias: Spark would read ``FROM t WHERE (TRUE)`` as ``t`` aliased
    # ``WHERE`` with its column renamed ``TRUE``
    sql = f"SELECT id FROM {LIVE_PROFILES} AS live WHERE {predicate}"
    return Query(sql, tuple(compiler.params))


@dataclass
class _Compiler:
    dialect: Dialect
    now: float
    params: list[object] = field(default_factory=list)

    def bind(self, value: object) -> str:
        placeholder = self.dialect.placeholder(len(self.params))
        self.params.append(value)
        return placeholder

    def integer(self, value: int) -> str:
        return self.dialect.integer(self.bind(self.dialect.integer_value(value)))

    def double(self, value: float) -> str:
        return self.bind(self.dialect.double_value(value))

    def rule(self, rule: Rule) -> str:
        if isinstance(rule, All):
            return _joined(" AND ", [self.rule(r) for r in rule.rules], "TRUE")
        if isinstance(rule, AnyOf):
            return _joined(" OR ", [self.rule(r) for r in rule.rules], "FALSE")
        if isinstance(rule, Not):
            return f"(NOT {self.rule(rule.rule)})"
        if isinstance(rule, Attribute):
            return self.attribute(rule)
        if isinstance(rule, Event):
            return self.event(rule)
        if isinstance(rule, Exposed):
            return self.exposed(rule)
        return self.synced(rule)

    # --- attributes ---------------------------------------------------------------------

    def attribute(self, rule: Attribute) -> str:
        if rule.op == "exists":
            return self.having_attribute(rule.name, None, negate=rule.value is not True)
        if rule.op in ("ne", "not_in"):
            positive: Op = "eq" if rule.op == "ne" else "in"
            return self.having_attribute(rule.name, positive, rule.value, negate=True)
        return self.having_attribute(rule.name, rule.op, rule.value)

    def having_attribute(
        self,
        name: str,
        op: Op | None,
        value: Scalar | tuple[Scalar, ...] = True,
        *,
        negate: bool = False,
    ) -> str:
        """``id [NOT] IN`` the profiles whose attribute ``name`` satisfies ``op value``."""
        where = f"name = {self.bind(name)}"
        if op is not None:
            where += f" AND ({self.condition(op, value)})"
        membership = "NOT IN" if negate else "IN"
        return f"(id {membership} (SELECT profile FROM {LIVE_ATTRIBUTES} WHERE {where}))"

    def condition(self, op: Op, value: Scalar | tuple[Scalar, ...]) -> str:
        if op == "in":
            wanted = value if isinstance(value, tuple) else ()
            return " OR ".join(f"({self.equals(w)})" for w in wanted) or "FALSE"
        if isinstance(value, tuple):  # parse_rule gives tuples to in/not_in only
            return "FALSE"
        if op == "eq":
            return self.equals(value)
        return self.compare(op, value)

    def equals(self, want: Scalar) -> str:
        """A row's value (or, for a list, one of its items) equals ``want``, as ``_eq``."""
        kind = "kind"
        if isinstance(want, bool):
            return f"{kind} = '{KIND_BOOL}' AND flag = {self.bind(want)}"
        if isinstance(want, str):
            text = self.bind(want)
            item = self.bind(want)
            return (
                f"({kind} = '{KIND_STRING}' AND text = {text}) OR "
                f"({kind} = '{KIND_LIST}' AND {self.dialect.contains('items', item)})"
            )
        if isinstance(want, int):
            as_int = f"{kind} = '{KIND_INT}' AND num_int = {self.integer(want)}"
            return f"({as_int}) OR ({self.float_condition('eq', want)})"
        # a finite float; an integer equals it only when it is integral
        as_float = f"{kind} = '{KIND_FLOAT}' AND num_float = {self.double(want)}"
        if not want.is_integer():
            return as_float
        return f"({as_float}) OR ({kind} = '{KIND_INT}' AND num_int = {self.integer(int(want))})"

    def compare(self, op: Op, want: Scalar) -> str:
        """Ordering (gt, gte, lt, lte) of a number against a number; never true otherwise."""
        if isinstance(want, bool) or not isinstance(want, int | float):
            return "FALSE"
        return f"({self.int_condition(op, want)}) OR ({self.float_condition(op, want)})"

    def int_condition(self, op: Op, want: int | float) -> str:
        """An integer row against ``want``, exactly: a float bound becomes its floor/ceiling."""
        if isinstance(want, float):
            bound = math.floor(want) if op in ("gt", "lte") else math.ceil(want)
        else:
            bound = want
        return f"kind = '{KIND_INT}' AND num_int {_FLIP[op]} {self.integer(bound)}"

    def float_condition(self, op: Op, want: int | float) -> str:
        """A float row (never NaN) against ``want``, exactly: an integer bound becomes the
        nearest double, the comparison made strict or not by which side of it ``want`` is."""
        bound, sql_op = _double_bound(op, want)
        if sql_op is None:
            return "FALSE"
        nan = self.dialect.is_nan("num_float")
        return f"kind = '{KIND_FLOAT}' AND NOT {nan} AND num_float {sql_op} {self.double(bound)}"

    # --- events, exposures, syncs -------------------------------------------------------------

    def event(self, rule: Event) -> str:
        where = f"name = {self.bind(rule.name)}"
        if rule.within_days is not None:
            since = self.now - rule.within_days * SECONDS_PER_DAY  # as Event.matches
            where += f" AND ts >= {self.bind(since)} AND ts <= {self.bind(self.now)}"
        counted = f"SELECT profile FROM {LIVE_EVENTS} WHERE {where} GROUP BY profile"
        at_most = None if rule.at_most is None else min(rule.at_most, MAX_COUNT)
        if rule.at_least == 0:  # a profile without the event matches: exclude the others
            assert at_most is not None  # parse_rule refuses at_least 0 without at_most
            return f"(id NOT IN ({counted} HAVING count(*) > {self.bind(at_most)}))"
        having = f"count(*) >= {self.bind(min(rule.at_least, MAX_COUNT))}"
        if at_most is not None:
            having += f" AND count(*) <= {self.bind(at_most)}"
        return f"(id IN ({counted} HAVING {having}))"

    def exposed(self, rule: Exposed) -> str:
        where = f"kind = {self.bind(rule.kind)}"
        if rule.campaign is not None:
            where += f" AND campaign = {self.bind(rule.campaign)}"
        at_least = self.bind(min(rule.at_least, MAX_COUNT))
        return (
            f"(id IN (SELECT profile FROM {LIVE_EXPOSURES} WHERE {where} "
            f"GROUP BY profile HAVING sum(count) >= {at_least}))"
        )

    def synced(self, rule: Synced) -> str:
        partner = self.bind(rule.partner)
        return f"(id IN (SELECT profile FROM {LIVE_SYNCS} WHERE partner = {partner}))"


def _joined(operator: str, predicates: list[str], empty: str) -> str:
    return "(" + operator.join(predicates) + ")" if predicates else empty


def _double_bound(op: Op, want: int | float) -> tuple[float, str | None]:
    """``(bound, sql operator)`` such that, for every double ``d`` (not NaN), ``d op want``
    (Python's exact comparison) equals ``d <sql operator> bound``; None: never holds."""
    if isinstance(want, float):
        return want, "=" if op == "eq" else _FLIP[op]
    try:
        bound = float(want)  # the nearest double: none lies strictly between it and want
    except OverflowError:
        bound = sys.float_info.max if want > 0 else -sys.float_info.max
    if bound == want:
        return bound, "=" if op == "eq" else _FLIP[op]
    if op == "eq":
        return bound, None
    if bound < want:  # d > want  <=>  d > bound;  d < want  <=>  d <= bound
        return bound, {"gt": ">", "gte": ">", "lt": "<=", "lte": "<="}[op]
    return bound, {"gt": ">=", "gte": ">=", "lt": "<", "lte": "<"}[op]
