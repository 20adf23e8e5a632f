"""Overlap and affinity between audiences: segments, and the audiences the impression pixels
saw (``imp:<campaign>``, ``click:<campaign>``, ``conv:<campaign>``).

For two audiences A and B of a population of N profiles:

    overlap    |A ∩ B|, and as a share of each side
    jaccard    |A ∩ B| / |A ∪ B|
    affinity   (|A ∩ B| / |A|) / (|B| / N): how much likelier a member of A is to be in B than
               an average profile (1.0: no affinity; 3.0: three times as likely)

Exact at small scale (sets of DMP uids), or counted in SQL by the analytics engine for segments
(``CountedAudiences``: every pair's figures of the last recompute). At large scale with
Apache DataSketches theta sketches (``datasketches``): each audience keeps at most k = 2^lg_k
hashes (lg_k 12: 4096, ~32 KiB serialized); an estimate's relative standard error is about
1/sqrt(k) (1.6 % for lg_k 12) and every figure is given with its bounds at ``STD_DEVS``
standard deviations (~95 %). An intersection's error is relative to the union of the two, so a
small overlap of two large audiences is the least precise figure.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import datasketches
import msgspec

LG_K = 12
STD_DEVS = 2  # bounds at ~95.4 %
POPULATION = "all"


def segment_audience(segment: str) -> str:
    return f"segment:{segment}"


def audiences_of(segments: Iterable[str], exposures: Mapping[str, Mapping[str, int]]) -> list[str]:
    """The audience names a profile belongs to (its segments and exposures)."""
    names = [segment_audience(s) for s in segments]
    for kind, campaigns in exposures.items():
        names += [f"{kind}:{campaign}" for campaign, count in campaigns.items() if count > 0]
    return names


def relative_error(lg_k: int = LG_K) -> float:
    """The bound on a single estimate's relative error at ``STD_DEVS`` (estimation mode)."""
    return STD_DEVS / math.sqrt(2**lg_k)


@dataclass(frozen=True, slots=True)
class Estimate:
    value: float
    low: float
    high: float

    @classmethod
    def exact(cls, value: int) -> Estimate:
        return cls(float(value), float(value), float(value))


@dataclass(frozen=True, slots=True)
class PairOverlap:
    a: str
    b: str
    size_a: Estimate
    size_b: Estimate
    both: Estimate
    union: Estimate
    population: Estimate

    @property
    def jaccard(self) -> float:
        return self.both.value / self.union.value if self.union.value else 0.0

    @property
    def affinity(self) -> float:
        """P(B | A) / P(B); 0 when either side is empty."""
        if not (self.size_a.value and self.size_b.value and self.population.value):
            return 0.0
        return (self.both.value / self.size_a.value) / (self.size_b.value / self.population.value)

    def to_dict(self) -> dict[str, object]:
        def est(e: Estimate) -> dict[str, float]:
            return {"estimate": round(e.value, 1), "low": round(e.low, 1), "high": round(e.high, 1)}

        return {
            "a": self.a,
            "b": self.b,
            "size_a": est(self.size_a),
            "size_b": est(self.size_b),
            "overlap": est(self.both),
            "union": est(self.union),
            "jaccard": round(self.jaccard, 4),
            "affinity": round(self.affinity, 3),
        }


class ExactAudiences:
    """Members of every audience as sets of DMP uids (small scale)."""

    exact = True

    def __init__(self) -> None:
        self.sets: dict[str, set[str]] = {}
        self.population = 0

    def add(self, dmp_uid: str, audiences: Iterable[str]) -> None:
        self.population += 1
        for name in audiences:
            self.sets.setdefault(name, set()).add(dmp_uid)

    def names(self) -> list[str]:
        return sorted(self.sets)

    def population_size(self) -> Estimate:
        return Estimate.exact(self.population)

    def error_bound(self) -> float | None:
        return None

    def size(self, name: str) -> Estimate:
        return Estimate.exact(len(self.sets.get(name, ())))

    def pair(self, a: str, b: str) -> PairOverlap:
        sa, sb = self.sets.get(a, set()), self.sets.get(b, set())
        return PairOverlap(
            a,
            b,
            Estimate.exact(len(sa)),
            Estimate.exact(len(sb)),
            Estimate.exact(len(sa & sb)),
            Estimate.exact(len(sa | sb)),
            Estimate.exact(self.population),
        )


def _estimate(sketch: Any) -> Estimate:
    return Estimate(
        float(sketch.get_estimate()),
        float(sketch.get_lower_bound(STD_DEVS)),
        float(sketch.get_upper_bound(STD_DEVS)),
    )


class SketchAudiences:
    """One theta sketch per audience, plus one of the whole population (large scale)."""

    exact = False

    def __init__(self, lg_k: int = LG_K) -> None:
        self.lg_k = lg_k
        self._updating: dict[str, Any] = {}
        self._compact: dict[str, Any] = {}

    def add(self, dmp_uid: str, audiences: Iterable[str]) -> None:
        for name in itertools.chain((POPULATION,), audiences):
            sketch = self._updating.get(name)
            if sketch is None:
                sketch = self._updating[name] = datasketches.update_theta_sketch(self.lg_k)
            sketch.update(dmp_uid)

    def _sketch(self, name: str) -> Any:
        found = self._compact.get(name)
        if found is None:
            updating = self._updating.get(name)
            if updating is None:
                updating = datasketches.update_theta_sketch(self.lg_k)
            found = self._compact[name] = updating.compact()
        return found

    def names(self) -> list[str]:
        return sorted((set(self._updating) | set(self._compact)) - {POPULATION})

    def population_size(self) -> Estimate:
        return self.size(POPULATION)

    def error_bound(self) -> float | None:
        """Relative error of one estimate at ``STD_DEVS`` standard deviations."""
        return relative_error(self.lg_k)

    def size(self, name: str) -> Estimate:
        return _estimate(self._sketch(name))

    def pair(self, a: str, b: str) -> PairOverlap:
        sa, sb = self._sketch(a), self._sketch(b)
        intersection = datasketches.theta_intersection()
        intersection.update(sa)
        intersection.update(sb)
        union = datasketches.theta_union(self.lg_k)
        union.update(sa)
        union.update(sb)
        return PairOverlap(
            a,
            b,
            _estimate(sa),
            _estimate(sb),
            _estimate(intersection.get_result()),
            _estimate(union.get_result()),
            self.size(POPULATION),
        )

    def serialized(self) -> dict[str, bytes]:
        """Every sketch (the population's under ``POPULATION``), compact and serialized."""
        return {name: bytes(self._sketch(name).serialize()) for name in self._updating}

    @classmethod
    def from_serialized(cls, sketches: Mapping[str, bytes], lg_k: int = LG_K) -> SketchAudiences:
        loaded = cls(lg_k)
        for name, raw in sketches.items():
            loaded._compact[name] = datasketches.compact_theta_sketch.deserialize(raw)
        return loaded


class CountedAudiences(msgspec.Struct, frozen=True):
    """Segment audiences counted elsewhere, exactly (the analytics engine's recompute, in SQL):
    the population, each audience's size and the overlap of every pair (``a < b``)."""

    population: int
    sizes: dict[str, int]
    pairs: list[tuple[str, str, int]]

    exact: ClassVar[bool] = True

    def names(self) -> list[str]:
        return sorted(self.sizes)

    def population_size(self) -> Estimate:
        return Estimate.exact(self.population)

    def error_bound(self) -> float | None:
        return None

    def size(self, name: str) -> Estimate:
        return Estimate.exact(self.sizes.get(name, 0))

    def pair(self, a: str, b: str) -> PairOverlap:
        both = {(x, y): n for x, y, n in self.pairs}.get((min(a, b), max(a, b)), 0)
        size_a, size_b = self.sizes.get(a, 0), self.sizes.get(b, 0)
        return PairOverlap(
            a, b, Estimate.exact(size_a), Estimate.exact(size_b), Estimate.exact(both),
            Estimate.exact(size_a + size_b - both), Estimate.exact(self.population),
        )  # fmt: skip

    @classmethod
    def of(
        cls, sizes: Mapping[str, int], pairs: Iterable[PairOverlap], population: int
    ) -> CountedAudiences:
        """From each segment's size and every pair (segment ids; ``segment:<id>`` here)."""
        found: list[tuple[str, str, int]] = []
        for p in pairs:
            a, b = segment_audience(p.a), segment_audience(p.b)
            found.append((min(a, b), max(a, b), int(p.both.value)))
        return cls(population, {segment_audience(s): n for s, n in sizes.items()}, found)


Audiences = ExactAudiences | SketchAudiences | CountedAudiences


def overlaps(
    audiences: Audiences, names: Iterable[str], against: Iterable[str] | None = None
) -> list[PairOverlap]:
    """Every pair of ``names`` (or each of ``names`` against each of ``against``)."""
    first = list(names)
    if against is None:
        pairs: Iterable[tuple[str, str]] = itertools.combinations(first, 2)
    else:
        others = list(against)
        pairs = ((a, b) for a in first for b in others if a != b)
    return [audiences.pair(a, b) for a, b in pairs]


def affinities(audiences: Audiences, base: str) -> list[PairOverlap]:
    """``base`` against every other audience, highest affinity first."""
    found = overlaps(audiences, [base], [n for n in audiences.names() if n != base])
    return sorted(found, key=lambda p: p.affinity, reverse=True)
