"""Counters, gauges and histograms that add up across a server's workers.

``prometheus_client``'s own metrics are per process, and its multiprocess mode takes a lock
and writes through ``struct`` on every update. Here each family keeps a dict of label tuples
to slot indices in this worker's shared-memory file (``web/slots.py``); an update is that dict
look-up and a float added in place, no lock (one writer per file). A scrape, answered by any
worker, reads every worker's file (``SharedMetrics.collect``):

- counters and histograms add up over all workers, those that exited included;
- gauges come from the live workers only, combined as the gauge says: ``sum`` (each worker
  holds its part), ``max``, or ``latest`` (the value last set by any worker).

Label values may be any value whose ``str`` is the label (a status code as an ``int``).
Families are declared once per process, at import or when a root builds its objects, on the
process's ``SharedMetrics`` (``SHARED``, exposed by the default Prometheus registry).
"""

from __future__ import annotations

import json
import os
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterable, Iterator, MutableMapping, Sequence
from typing import Literal, TypeVar

from prometheus_client import REGISTRY
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from cookiematch.web.slots import METRICS_DIR_ENV, SlotFile, WorkerValues, read_directory

__all__ = [
    "LATENCY_BUCKETS",
    "SHARED",
    "GaugeMode",
    "LabelledCounter",
    "LabelledGauge",
    "LabelledHistogram",
    "ResponseMeter",
    "SharedMetrics",
    "WorkerCounts",
]

Labels = tuple[Hashable, ...]
_NO_VALUES: memoryview[float] = memoryview(b"").cast("d")  # until a series is allocated
GaugeMode = Literal["sum", "max", "latest"]
K = TypeVar("K", bound=Hashable)
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Seconds: from a cached answer (well under a millisecond) to a store's retry window."""


class SharedMetrics(Collector):
    """The families of one process and their values across every worker (the collector).

    ``directory`` None: the one named by ``COOKIEMATCH_METRICS_DIR``, if any, else this
    process's memory only. The file is opened at the first update, so a forked child writes
    its own (``os.register_at_fork`` forgets the parent's).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = REGISTRY,
        *,
        directory: str | None = None,
        capacity: int | None = None,
    ) -> None:
        self._directory = directory
        self._capacity = capacity
        self._families: dict[str, _Family] = {}
        self._forgetting: list[Callable[[], None]] = []
        self._folds: list[tuple[weakref.WeakMethod[Callable[[], None]], int]] = []
        self._file: SlotFile | None = None
        os.register_at_fork(after_in_child=self._forget)
        if registry is not None:
            registry.register(self)

    def add(self, family: _Family) -> None:
        if family.name in self._families:
            raise ValueError(f"metric family {family.name} is declared twice")
        self._families[family.name] = family
        self._forgetting.append(family.forget)

    def on_forget(self, forget: Callable[[], None]) -> None:
        """Call ``forget`` when this process's slots are gone (closed, or a forked child)."""
        self._forgetting.append(forget)

    def before_collect(self, fold: Callable[[], None]) -> None:
        """Call the bound method ``fold`` before each collection in this process (counts
        tallied as plain ints on a hot path join their counters), while its object lives,
        when the collection runs on the thread that registered it (the tally's own)."""
        self._folds = [(ref, thread) for ref, thread in self._folds if ref() is not None]
        self._folds.append((weakref.WeakMethod(fold), threading.get_ident()))

    def file(self) -> SlotFile:
        """This process's slot file, opened on first use."""
        if self._file is None:
            directory = self._directory or os.environ.get(METRICS_DIR_ENV) or None
            if self._capacity is None:
                self._file = SlotFile(directory)
            else:
                self._file = SlotFile(directory, self._capacity)
        return self._file

    def close(self) -> None:
        """Release this process's file (its values stay for the other workers to read)."""
        file = self._file
        if file is not None:
            self._forget()
            file.close()  # after the families let go of its values

    def _forget(self) -> None:
        self._file = None  # in a forked child: the parent's mapping, never written here
        for forget in self._forgetting:
            forget()

    def workers(self) -> list[WorkerValues]:
        return list(read_directory(self.file()))

    def collect(self) -> Iterator[Metric]:
        here = threading.get_ident()
        for ref, thread in self._folds:
            fold = ref()
            if fold is not None and thread == here:
                fold()
        totals: dict[str, dict[tuple[str, ...], list[float]]] = {}
        for worker in self.workers():
            for key, values in worker.series:
                name, labels = json.loads(key)
                family = self._families.get(name)
                if family is None or (family.is_gauge and not worker.alive):
                    continue
                series = totals.setdefault(name, {})
                series[tuple(labels)] = family.combine(series.get(tuple(labels)), values)
        for name, family in self._families.items():
            yield family.exposed(totals.get(name, {}))

    def describe(self) -> Iterator[Metric]:
        for family in self._families.values():
            yield family.exposed({})


SHARED = SharedMetrics()
"""The process's families, exposed at ``/metrics`` by the default registry."""


class _Family:
    """What every family shares: its name, labels, values per label tuple in the slot file."""

    is_gauge = False
    width = 1
    metric_family: type[CounterMetricFamily] | type[GaugeMetricFamily] = CounterMetricFamily

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], metrics: SharedMetrics
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._metrics = metrics
        self._index: dict[Labels, int] = {}
        self._values: memoryview[float] = _NO_VALUES
        metrics.add(self)

    def forget(self) -> None:
        self._index = {}
        self._values = _NO_VALUES

    def _allocate(self, labels: Labels) -> int:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {labels!r}")
        file = self._metrics.file()
        key = json.dumps([self.name, [str(value) for value in labels]]).encode()
        index = file.allocate(key, self.width)
        self._values = file.values
        self._index[labels] = index
        return index

    def slot(self, labels: Labels) -> int:
        """The index of ``labels``' first value in ``values()`` (allocated if new): a
        counter's count, a histogram's first bucket."""
        index = self._index.get(labels)
        return self._allocate(labels) if index is None else index

    def values(self) -> memoryview[float]:
        """This worker's values, as ``slot`` indexes them."""
        return self._values

    def labelled(self) -> list[Labels]:
        """The label tuples this worker has values for."""
        return list(self._index)

    def own(self, labels: Labels) -> tuple[float, ...]:
        """This worker's values for ``labels`` (zeros if never updated here)."""
        index = self._index.get(labels)
        if index is None:
            return (0.0,) * self.width
        return tuple(self._values[index : index + self.width])

    def combine(self, total: list[float] | None, values: tuple[float, ...]) -> list[float]:
        """Add one worker's values to the total of the other workers read so far."""
        if total is None:
            return list(values)
        return [a + b for a, b in zip(total, values, strict=True)]

    def value(self, labels: Labels) -> float:
        """This worker's value for ``labels``: a counter's count, a gauge's value (0 if never
        updated here)."""
        return self.own(labels)[0]

    def exposed(self, series: dict[tuple[str, ...], list[float]]) -> Metric:
        """The family with every worker's combined values (one value per series)."""
        family = self.metric_family(self.name, self.documentation, labels=self.labelnames)
        for labels, values in sorted(series.items()):
            family.add_metric(labels, values[0])
        return family


class LabelledCounter(_Family):
    """A counter family with fixed label names; ``inc(("a", "b"))`` counts one for a, b.

    Exposed as ``<name>_total{labels}``, summed over every worker that ever counted."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        metrics: SharedMetrics = SHARED,
    ) -> None:
        super().__init__(name, documentation, labelnames, metrics)

    def inc(self, labels: Labels, amount: float = 1) -> None:
        index = self._index.get(labels)
        if index is None:
            index = self._allocate(labels)
        self._values[index] += amount


class LabelledGauge(_Family):
    """A gauge family; each worker ``set``s (or ``inc``s) its own value, the live workers'
    values are combined by ``mode`` (``sum``, ``max``, or the ``latest`` set)."""

    is_gauge = True
    width = 2  # the value, and when it was set
    metric_family = GaugeMetricFamily

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        metrics: SharedMetrics = SHARED,
        *,
        mode: GaugeMode = "sum",
    ) -> None:
        super().__init__(name, documentation, labelnames, metrics)
        self.mode = mode

    def set(self, labels: Labels, value: float) -> None:
        index = self._index.get(labels)
        if index is None:
            index = self._allocate(labels)
        values = self._values
        values[index] = value
        values[index + 1] = time.time()

    def inc(self, labels: Labels, amount: float = 1) -> None:
        self.set(labels, self.own(labels)[0] + amount)

    def combine(self, total: list[float] | None, values: tuple[float, ...]) -> list[float]:
        if total is None:
            return list(values)
        if self.mode == "sum":
            return [total[0] + values[0], max(total[1], values[1])]
        if self.mode == "max":
            return list(values) if values[0] > total[0] else total
        return list(values) if values[1] > total[1] else total  # latest


class LabelledHistogram(_Family):
    """A histogram family: ``observe(labels, value)`` puts ``value`` in its bucket (``le``,
    inclusive) and adds it to the sum; summed over every worker that ever observed."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        metrics: SharedMetrics = SHARED,
        *,
        buckets: Iterable[float] = LATENCY_BUCKETS,
    ) -> None:
        self.bounds = tuple(sorted(buckets))
        self.width = len(self.bounds) + 2  # each bucket, +Inf, then the sum
        self._sum_at = len(self.bounds) + 1
        super().__init__(name, documentation, labelnames, metrics)

    def observe(self, labels: Labels, value: float) -> None:
        index = self._index.get(labels)
        if index is None:
            index = self._allocate(labels)
        values = self._values
        values[index + bisect_left(self.bounds, value)] += 1
        values[index + self._sum_at] += value

    def count(self, labels: Labels) -> float:
        """This worker's number of observations for ``labels``."""
        return sum(self.own(labels)[: self._sum_at])

    def exposed(self, series: dict[tuple[str, ...], list[float]]) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, values in sorted(series.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip((*self.bounds, float("inf")), values, strict=False):
                cumulative += count
                buckets.append((_bound_text(bound), cumulative))
            family.add_metric(list(labels), buckets, values[self._sum_at])
        return family


class ResponseMeter:
    """One answer counted by route and status and timed by route, in one look-up: the hot
    path's ``LabelledCounter.inc`` and ``LabelledHistogram.observe`` together. Any pair of a
    counter labelled ``(name, label)`` and a histogram labelled ``(name,)`` is metered so (a
    store call: by operation and outcome, timed by operation)."""

    def __init__(
        self, responses: LabelledCounter, duration: LabelledHistogram, metrics: SharedMetrics
    ) -> None:
        self.responses = responses
        self.duration = duration
        self._bounds = duration.bounds
        self._sum_at = len(duration.bounds) + 1
        # per (route, status): the count's slot, the histogram's first bucket, its sum's slot
        self._slots: dict[tuple[str, Hashable], tuple[int, int, int]] = {}
        self._values: memoryview[float] = _NO_VALUES
        metrics.on_forget(self._forget)

    def _forget(self) -> None:
        self._slots = {}
        self._values = _NO_VALUES

    def record(self, route: str, status: Hashable, seconds: float) -> None:
        slots = self._slots.get((route, status))
        if slots is None:
            slots = self._allocate(route, status)
        counted, timed, summed = slots
        values = self._values
        values[counted] += 1
        values[timed + bisect_left(self._bounds, seconds)] += 1
        values[summed] += seconds

    def _allocate(self, route: str, status: Hashable) -> tuple[int, int, int]:
        timed = self.duration.slot((route,))
        slots = self._slots[route, status] = (
            self.responses.slot((route, status)),
            timed,
            timed + self._sum_at,
        )
        self._values = self.duration.values()
        return slots


def _bound_text(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class WorkerCounts(MutableMapping[K, int]):
    """This worker's counts as a mapping (``counts[key] += 1``), written to counter families:
    ``route(key)`` names the family and labels of a key. For the domain's tallies (the
    privacy policy's decisions, the buyer's stats), which know no metrics. Its slots are
    forgotten with those of ``metrics``, where its families are declared."""

    def __init__(
        self,
        route: Callable[[K], tuple[LabelledCounter, Labels]],
        metrics: SharedMetrics = SHARED,
    ) -> None:
        self._route = route
        self._slots: dict[K, int] = {}
        self._values: memoryview[float] = _NO_VALUES
        metrics.on_forget(self._forget)

    def _forget(self) -> None:
        self._slots = {}
        self._values = _NO_VALUES

    def __getitem__(self, key: K) -> int:
        slot = self._slots.get(key)
        return 0 if slot is None else int(self._values[slot])

    def __setitem__(self, key: K, value: int) -> None:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._allocate(key)
        self._values[slot] = value

    def add(self, key: K, amount: int = 1) -> None:
        """``counts[key] += amount`` in one call (the hot path's)."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._allocate(key)
        self._values[slot] += amount

    def add_each(self, keys: Sequence[K]) -> None:
        """Count each of ``keys`` once, in one call (a request's several counts)."""
        slots, values = self._slots, self._values
        for key in keys:
            slot = slots.get(key)
            if slot is None:
                slot = self._allocate(key)
                values = self._values
            values[slot] += 1

    def _allocate(self, key: K) -> int:
        counter, labels = self._route(key)
        slot = self._slots[key] = counter.slot(labels)
        self._values = counter.values()
        return slot

    def __delitem__(self, key: K) -> None:
        raise TypeError("counts only grow")

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._slots))

    def __len__(self) -> int:
        return len(self._slots)
