"""Segment rules as data: a small tree read from TOML/JSON, validated at load, evaluated purely.

A node is a table with exactly one of these keys (docs/dmp-data.md)::

    {all = [rule, ...]}                    every sub-rule holds (an empty list: always true)
    {any = [rule, ...]}                    at least one holds (an empty list: never)
    {not = rule}
    {attribute = "tier", op = "eq", value = "gold"}
        op: eq ne in not_in gt gte lt lte exists; a list attribute matches eq/in when any
        element does; gt..lte compare numbers only; exists takes true or false
    {event = "purchase", within_days = 30, at_least = 1, at_most = 5}
        count of the event's timestamps within the window (default: any time)
    {exposed = "imp" | "click" | "conv", campaign = "c1", at_least = 1}
        impression-pixel tallies; without campaign: summed over every campaign
    {synced = "analytics"}                 the browser is synced with that partner

Evaluation reads only a ``ProfileSnapshot`` and ``now`` (Unix seconds): no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from cookiematch.clock import SECONDS_PER_DAY
from cookiematch.dmp.snapshot import AttributeValue, ProfileSnapshot
from cookiematch.errors import RuleError

MAX_DEPTH = 16
MAX_NODES = 256
EXPOSURES = ("imp", "click", "conv")
COMPARISONS = ("gt", "gte", "lt", "lte")
Op = Literal["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists"]
OPS: tuple[Op, ...] = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists")
Scalar: TypeAlias = str | int | float | bool


@dataclass(frozen=True, slots=True)
class All:
    rules: tuple[Rule, ...]

    def matches(self, profile: ProfileSnapshot, now: float) -> bool:
        return all(rule.matches(profile, now) for rule in self.rules)


@dataclass(frozen=True, slots=True)
class AnyOf:
    rules: tuple[Rule, ...]

    def matches(self, profile: ProfileSnapshot, now: float) -> bool:
        return any(rule.matches(profile, now) for rule in self.rules)


@dataclass(frozen=True, slots=True)
class Not:
    rule: Rule

    def matches(self, profile: ProfileSnapshot, now: float) -> bool:
        return not self.rule.matches(profile, now)


def _eq(have: Scalar, want: Scalar | tuple[Scalar, ...]) -> bool:
    if isinstance(have, bool) or isinstance(want, bool):
        return have is want  # true is not 1
    return have == want


def _compare(op: Op, have: AttributeValue, want: Scalar | tuple[Scalar, ...]) -> bool:
    if isinstance(have, list):
        if op in ("ne", "not_in"):
            return not any(_compare("eq" if op == "ne" else "in", h, want) for h in have)
        return any(_compare(op, h, want) for h in have)
    if op == "eq":
        return _eq(have, want)
    if op == "ne":
        return not _eq(have, want)
    if op == "in":
        return isinstance(want, tuple) and any(_eq(have, w) for w in want)
    if op == "not_in":
        return not _compare("in", have, want)
    if isinstance(have, bool) or not isinstance(have, int | float):
        return False
    if isinstance(want, bool) or not isinstance(want, int | float):
        return False
    if op == "gt":
        return have > want
    if op == "gte":
        return have >= want
    if op == "lt":
        return have < want
    return have <= want


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    op: Op
    value: Scalar | tuple[Scalar, ...]

    def matches(self, profile: ProfileSnapshot, now: float) -> bool:
        have = profile.attributes.get(self.name)
        if self.op == "exists":
            return (have is not None) is self.value
        if have is None:
            return self.op in ("ne", "not_in")
        return _compare(self.op, have, self.value)


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    within_days: float | None = None
    at_least: int = 1
    at_most: int | None = None

    def matches(self, profile: ProfileSnapshot, now: float) -> bool:
        times = profile.events.get(self.name, ())
        if self.within_days is None:
            count = len(times)
        else:
            since = now - self.within_days * SECONDS_PER_DAY
            count = sum(1 for t in times if since <= t <= now)
        return count >= self.at_least and (self.at_most is None or count <= self.at_most)


@dataclass(frozen=True, slots=True)
class Exposed:
    kind: str  # "imp" | "click" | "conv"
    campaign: str | None = None
    at_least: int = 1

    def matches(self, profile: ProfileSnapshot, now: float) -> bool:
        tallies = profile.exposures.get(self.kind, {})
        count = sum(tallies.values()) if self.campaign is None else tallies.get(self.campaign, 0)
        return count >= self.at_least


@dataclass(frozen=True, slots=True)
class Synced:
    partner: str

    def matches(self, profile: ProfileSnapshot, now: float) -> bool:
        return self.partner in profile.partners


Rule: TypeAlias = All | AnyOf | Not | Attribute | Event | Exposed | Synced

# --- parsing --------------------------------------------------------------------------------

_KINDS = ("all", "any", "not", "attribute", "event", "exposed", "synced")
_ALLOWED: dict[str, frozenset[str]] = {
    "all": frozenset({"all"}),
    "any": frozenset({"any"}),
    "not": frozenset({"not"}),
    "attribute": frozenset({"attribute", "op", "value"}),
    "event": frozenset({"event", "within_days", "at_least", "at_most"}),
    "exposed": frozenset({"exposed", "campaign", "at_least"}),
    "synced": frozenset({"synced"}),
}


class _Budget:
    def __init__(self) -> None:
        self.nodes = 0


def parse_rule(data: object, path: str = "rule") -> Rule:
    """The rule tree of ``data`` (decoded TOML/JSON); raises RuleError naming the key path."""
    return _parse(data, path, 0, _Budget())


def _parse(data: object, path: str, depth: int, budget: _Budget) -> Rule:
    budget.nodes += 1
    if budget.nodes > MAX_NODES:
        raise RuleError(path, f"a rule may have at most {MAX_NODES} nodes")
    if depth > MAX_DEPTH:
        raise RuleError(path, f"rules nest at most {MAX_DEPTH} deep")
    if not isinstance(data, Mapping):
        raise RuleError(path, 'expected a table such as {all = [...]} or {event = "..."}')
    kinds = [k for k in _KINDS if k in data]
    if len(kinds) != 1:
        found = ", ".join(kinds) or "none"
        raise RuleError(path, f"expected exactly one of {', '.join(_KINDS)} (found {found})")
    kind = kinds[0]
    for key in data:
        if key not in _ALLOWED[kind]:
            raise RuleError(f"{path}.{key}", f"unknown key in a {kind!r} rule")
    if kind in ("all", "any"):
        items = data[kind]
        if not isinstance(items, Sequence) or isinstance(items, str):
            raise RuleError(f"{path}.{kind}", "expected a list of rules")
        rules = tuple(
            _parse(item, f"{path}.{kind}[{i}]", depth + 1, budget) for i, item in enumerate(items)
        )
        return All(rules) if kind == "all" else AnyOf(rules)
    if kind == "not":
        return Not(_parse(data["not"], f"{path}.not", depth + 1, budget))
    if kind == "attribute":
        return _attribute(data, path)
    if kind == "event":
        return _event(data, path)
    if kind == "exposed":
        return _exposed(data, path)
    return Synced(_name(data, "synced", path))


def _name(data: Mapping[str, object], key: str, path: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not 1 <= len(value) <= 128:
        raise RuleError(f"{path}.{key}", "expected a name of 1-128 characters")
    return value


def _int(data: Mapping[str, object], key: str, path: str, default: int | None) -> int | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RuleError(f"{path}.{key}", "expected a non-negative integer")
    return value


def _scalar(value: object, path: str) -> Scalar:
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise RuleError(path, "expected a string, a number or a boolean")


def _attribute(data: Mapping[str, object], path: str) -> Attribute:
    name = _name(data, "attribute", path)
    op = data.get("op", "eq")
    if op not in OPS:
        raise RuleError(f"{path}.op", f"expected one of {', '.join(OPS)}")
    if "value" not in data and op != "exists":
        raise RuleError(f"{path}.value", f"required for op {op!r}")
    raw = data.get("value", True)
    value: Scalar | tuple[Scalar, ...]
    if op in ("in", "not_in"):
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            raise RuleError(f"{path}.value", f"op {op!r} takes a list")
        value = tuple(_scalar(v, f"{path}.value[{i}]") for i, v in enumerate(raw))
    elif op == "exists":
        if not isinstance(raw, bool):
            raise RuleError(f"{path}.value", "op 'exists' takes true or false")
        value = raw
    elif op in COMPARISONS:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise RuleError(f"{path}.value", f"op {op!r} takes a number")
        value = _scalar(raw, f"{path}.value")
    else:
        value = _scalar(raw, f"{path}.value")
    return Attribute(name, op, value)


def _event(data: Mapping[str, object], path: str) -> Event:
    name = _name(data, "event", path)
    within = data.get("within_days")
    if within is not None and (
        isinstance(within, bool) or not isinstance(within, int | float) or not 0 < within < 36600
    ):
        raise RuleError(f"{path}.within_days", "expected a positive number of days")
    at_least = _int(data, "at_least", path, 1)
    at_most = _int(data, "at_most", path, None)
    assert at_least is not None
    if at_most is not None and at_most < at_least:
        raise RuleError(f"{path}.at_most", "must not be below at_least")
    if at_least == 0 and at_most is None:
        raise RuleError(f"{path}.at_least", "0 always holds; use {not = ...} or set at_most")
    return Event(name, None if within is None else float(within), at_least, at_most)


def _exposed(data: Mapping[str, object], path: str) -> Exposed:
    kind = data["exposed"]
    if kind not in EXPOSURES:
        raise RuleError(f"{path}.exposed", f"expected one of {', '.join(EXPOSURES)}")
    campaign = _name(data, "campaign", path) if "campaign" in data else None
    at_least = _int(data, "at_least", path, 1)
    assert at_least is not None
    if at_least < 1:
        raise RuleError(f"{path}.at_least", "expected at least 1")
    return Exposed(str(kind), campaign, at_least)
