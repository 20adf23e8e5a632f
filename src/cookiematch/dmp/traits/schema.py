"""The trait schema: declared traits (``[[dmp.traits]]``), their value types and lifetimes, and
the defaults for names that are not declared."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from cookiematch.clock import SECONDS_PER_DAY
from cookiematch.dmp.snapshot import AttributeValue

EVENT_EXPIRY_STEP = 3600.0  # event expiries are rounded up to the hour, so they share writes


class TraitKind(enum.Enum):
    STRING = "string"
    NUMBER = "number"
    BOOL = "bool"
    LIST = "list"  # a list of strings
    EVENT = "event"


@dataclass(frozen=True, slots=True)
class TraitDef:
    """A declared trait: its value type and how long a value lives."""

    name: str
    kind: TraitKind
    ttl_seconds: float


def _type_problem(kind: TraitKind, value: AttributeValue) -> str | None:
    if kind is TraitKind.STRING:
        ok = isinstance(value, str)
    elif kind is TraitKind.NUMBER:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind is TraitKind.BOOL:
        ok = isinstance(value, bool)
    elif kind is TraitKind.LIST:
        ok = isinstance(value, list)
    else:
        return "is an event, not an attribute"
    return None if ok else f"expected {kind.value}"


@dataclass(frozen=True, slots=True)
class TraitCatalog:
    """Declared traits, and the defaults for names that are not declared."""

    traits: Mapping[str, TraitDef] = field(default_factory=dict)
    attribute_ttl: float = 90.0 * SECONDS_PER_DAY
    event_ttl: float = 90.0 * SECONDS_PER_DAY
    max_events_per_name: int = 50
    reject_unknown: bool = False  # True: a record naming an undeclared trait is rejected

    def attribute_problem(self, name: str, value: AttributeValue) -> str | None:
        trait = self.traits.get(name)
        if trait is None:
            return "unknown trait" if self.reject_unknown else None
        return _type_problem(trait.kind, value)

    def event_problem(self, name: str) -> str | None:
        trait = self.traits.get(name)
        if trait is None:
            return "unknown trait" if self.reject_unknown else None
        return None if trait.kind is TraitKind.EVENT else f"is a {trait.kind.value} attribute"

    def attribute_ttl_of(self, name: str) -> float:
        trait = self.traits.get(name)
        return self.attribute_ttl if trait is None else trait.ttl_seconds

    def event_expiry(self, name: str, ts: int) -> float:
        """When an event stops counting: its trait's TTL after ``ts``, rounded up to the hour."""
        trait = self.traits.get(name)
        ttl = self.event_ttl if trait is None else trait.ttl_seconds
        return math.ceil((ts + ttl) / EVENT_EXPIRY_STEP) * EVENT_EXPIRY_STEP
