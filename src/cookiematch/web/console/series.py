"""The console's time series: the figures ``/metrics`` exposes, recorded in the store every
``sample_seconds`` by one worker of the fleet, kept ``retention_hours``.

    every worker, every few seconds:  claim ``console:<role>:claim`` (set_if_absent, TTL =
                                      sample_seconds)? ── yes ──▶ read the Prometheus
                                      registry (the counters summed over the server's
                                      workers: ``web/counters.py``), keep the families of
                                      the role's ``Selection``s, write one point
                                      ``console:<role>:<bucket>`` (TTL = retention)
    a console page:                   ``SeriesLog.read``: the points of the last minutes
                                      (at most ``MAX_POINTS``), counters turned into rates
                                      per second between consecutive points

A point holds cumulative values, so it does not matter which worker records it; a counter
that went down (a server restarted) gives no rate for that step. With several servers the
point is the figures of the server whose worker won the claim.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import msgspec
from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

from cookiematch.clock import Clock
from cookiematch.storage.base import Store

__all__ = ["MAX_POINTS", "Lines", "Probe", "Selection", "SeriesLog", "sample"]

log = logging.getLogger(__name__)

MAX_POINTS = 1440
"""The most points one read returns (a day of the default one-minute points)."""
SEP = "|"  # between a series' name and its label values in a point's keys


Probe = Callable[[], Awaitable[dict[str, float]]]


@dataclass(frozen=True, slots=True)
class Selection:
    """One charted series: the Prometheus ``family`` (its name without ``_total``), kept by
    the labels ``by`` (others summed); a counter is charted as a rate per second.
    ``party_label`` names the label holding a buyer's nid: a buyer's session sees only its
    own lines (a selection without one: the operator's only). A figure no family exposes is
    read by a ``probe`` instead (a gauge: label value -> value, e.g. segment sizes), once per
    point, off any request."""

    name: str
    family: str
    by: tuple[str, ...] = ()
    counter: bool = True
    party_label: str | None = None
    probe: Probe | None = None

    def line(self, labels: dict[str, str]) -> str:
        return SEP.join([self.name, *(labels.get(label, "") for label in self.by)])


class _Point(msgspec.Struct, frozen=True):
    t: float
    v: dict[str, float]


def sample(
    selections: Sequence[Selection], registry: CollectorRegistry = REGISTRY
) -> dict[str, float]:
    """The current value of every line of ``selections``: ``name|label values`` -> value."""
    wanted: dict[str, list[Selection]] = {}
    for selection in selections:
        if selection.probe is None:
            wanted.setdefault(selection.family, []).append(selection)
    values: dict[str, float] = {}
    for metric in registry.collect():
        for selection in wanted.get(metric.name, ()):
            suffix = "_total" if selection.counter else ""
            for found in metric.samples:
                if found.name == metric.name + suffix and math.isfinite(found.value):
                    line = selection.line(found.labels)
                    values[line] = values.get(line, 0.0) + found.value
    return values


@dataclass(frozen=True, slots=True)
class Lines:
    """What a chart draws: the times (unix seconds) and one list of values per line (None
    where there is no value), lines named by their label values joined by ``|``."""

    t: list[float]
    lines: dict[str, list[float | None]]

    def ratio(self, numerator: str, denominator: str) -> Lines:
        """For each ``<x>|<numerator>`` line beside an ``<x>|<denominator>`` one, the line
        ``<x>``: their quotient (None where the denominator is 0 or missing)."""
        out: dict[str, list[float | None]] = {}
        for name, values in self.lines.items():
            head, sep, last = name.rpartition(SEP)
            below = self.lines.get(head + sep + denominator)
            if last != numerator or below is None:
                continue
            out[head or numerator] = [
                n / d if n is not None and d else None for n, d in zip(values, below, strict=True)
            ]
        return Lines(self.t, out)

    def share(self, part: str) -> Lines:
        """For each group of lines that differ in their last label only, the line of the
        group named without it: the ``<x>|<part>`` line over the group's sum (None where the
        sum is 0 or a value is missing)."""
        groups: dict[str, list[list[float | None]]] = {}
        for name, values in self.lines.items():
            groups.setdefault(name.rpartition(SEP)[0], []).append(values)
        out: dict[str, list[float | None]] = {}
        for name, values in self.lines.items():
            head, _, last = name.rpartition(SEP)
            if last != part:
                continue
            sums = [
                None if any(v is None for v in column) else sum(v for v in column if v is not None)
                for column in zip(*groups[head], strict=True)
            ]
            out[head or part] = [
                n / total if n is not None and total else None
                for n, total in zip(values, sums, strict=True)
            ]
        return Lines(self.t, out)

    def only(self, start: str) -> Lines:
        """The lines with a label value starting with ``start``."""
        kept = {
            name: values
            for name, values in self.lines.items()
            if any(part.startswith(start) for part in name.split(SEP))
        }
        return Lines(self.t, kept)


class SeriesLog:
    """Records a point when this worker wins the interval; reads the points back."""

    def __init__(
        self,
        store: Store,
        role: str,
        selections: Sequence[Selection],
        *,
        interval_seconds: float,
        retention_seconds: float,
        clock: Clock = time.time,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._store = store
        self._role = role
        self.selections = {s.name: s for s in selections}
        self._interval = interval_seconds
        self._retention = retention_seconds
        self._clock = clock
        self._registry = registry

    def _key(self, bucket: int) -> str:
        return f"console:{self._role}:{bucket}"

    async def record_if_due(self) -> bool:
        """Record a point unless another worker did in this interval."""
        claim = f"console:{self._role}:claim"
        if not await self._store.set_if_absent(claim, b"1", ttl=self._interval):
            return False
        now = self._clock()
        values = sample(list(self.selections.values()), self._registry)
        for selection in self.selections.values():
            if selection.probe is not None:
                for label, value in (await selection.probe()).items():
                    values[SEP.join((selection.name, label))] = value
        point = msgspec.json.encode(_Point(now, values))
        await self._store.set(self._key(int(now // self._interval)), point, ttl=self._retention)
        return True

    async def read(self, name: str, seconds: float, party: str | None = None) -> Lines:
        """The lines of series ``name`` over the last ``seconds`` (at most ``MAX_POINTS``
        points and the retention); a buyer's ``party`` sees only its own lines."""
        selection = self.selections[name]
        span = min(seconds, self._retention, MAX_POINTS * self._interval)
        last = int(self._clock() // self._interval)
        first = last - max(int(span // self._interval), 1)
        raw = await self._store.get_many([self._key(b) for b in range(first, last + 1)])
        points = [p for p in map(_decode_point, raw) if p is not None]
        prefix = selection.name + SEP if selection.by else selection.name
        keys = sorted(
            {k for p in points for k in p.v if k == selection.name or k.startswith(prefix)}
        )
        if party is not None:
            assert selection.party_label is not None, "checked by the caller"
            index = 1 + selection.by.index(selection.party_label)
            keys = [k for k in keys if k.split(SEP)[index] == party]
        labels = {k: SEP.join(k.split(SEP)[1:]) or selection.name for k in keys}
        if not selection.counter:
            return Lines(
                [p.t for p in points], {labels[k]: [p.v.get(k) for p in points] for k in keys}
            )
        return Lines(
            [p.t for p in points[1:]],
            {labels[k]: list(_rates(points, k)) for k in keys},
        )

    async def tick(self) -> None:
        """The role's periodic step (``RoleServer.every``, every ``poll_seconds``)."""
        await self.record_if_due()

    @property
    def poll_seconds(self) -> float:
        """How often each worker tries to win the interval (a fifth of it, 0.2 s to 5 s)."""
        return min(max(self._interval / 5, 0.2), 5.0)


def _rates(points: Sequence[_Point], key: str) -> Iterable[float | None]:
    """Per second between consecutive points (a line missing before was 0); None for a
    line missing after, or a counter that went down."""
    for before, after in itertools.pairwise(points):
        a, b = before.v.get(key, 0.0), after.v.get(key)
        elapsed = after.t - before.t
        yield (b - a) / elapsed if b is not None and b >= a and elapsed > 0 else None


def _decode_point(raw: bytes | None) -> _Point | None:
    """A stored point, or None when there is none or it does not decode (left out, not a 500)."""
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=_Point)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
