"""The families of ``web/counters.py`` in one process (the anonymous-memory case); several
workers are in ``test_metric_slots.py``."""

from __future__ import annotations

import threading
import weakref

from prometheus_client import CollectorRegistry, generate_latest

from cookiematch.web.counters import (
    LabelledCounter,
    LabelledGauge,
    LabelledHistogram,
    SharedMetrics,
    WorkerCounts,
)


def own_metrics() -> tuple[SharedMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return SharedMetrics(registry), registry


def test_labelled_counter_exposes_what_it_counted() -> None:
    metrics, registry = own_metrics()
    counter = LabelledCounter("cm_test_outcomes", "Outcomes.", ("nid", "outcome"), metrics)
    counter.inc(("a", "redirect"))
    counter.inc(("a", "redirect"))
    counter.inc(("b", "error_3"), 5)
    text = generate_latest(registry).decode()
    assert "# TYPE cm_test_outcomes_total counter" in text
    assert 'cm_test_outcomes_total{nid="a",outcome="redirect"} 2.0' in text
    assert 'cm_test_outcomes_total{nid="b",outcome="error_3"} 5.0' in text
    assert counter.value(("a", "redirect")) == 2
    assert counter.value(("c", "redirect")) == 0


def test_labelled_counter_escapes_label_values() -> None:
    metrics, registry = own_metrics()
    counter = LabelledCounter("cm_test_reasons", "Reasons.", ("reason",), metrics)
    counter.inc(('quote"and\\slash',))
    text = generate_latest(registry).decode()
    assert 'cm_test_reasons_total{reason="quote\\"and\\\\slash"} 1.0' in text


def test_a_label_is_the_str_of_its_value() -> None:
    metrics, registry = own_metrics()
    counter = LabelledCounter("cm_test_statuses", "Statuses.", ("status",), metrics)
    counter.inc((302,))
    counter.inc(("302",))  # another key in this worker, the same series once exposed
    assert 'cm_test_statuses_total{status="302"} 2.0' in generate_latest(registry).decode()


def test_a_histogram_counts_each_value_in_its_inclusive_bucket() -> None:
    metrics, registry = own_metrics()
    histogram = LabelledHistogram("cm_test_seconds", "S.", ("route",), metrics, buckets=(1, 2))
    for value in (0.5, 1.0, 1.5, 3.0):
        histogram.observe(("/pixel",), value)
    text = generate_latest(registry).decode()
    assert 'cm_test_seconds_bucket{le="1.0",route="/pixel"} 2.0' in text
    assert 'cm_test_seconds_bucket{le="2.0",route="/pixel"} 3.0' in text
    assert 'cm_test_seconds_bucket{le="+Inf",route="/pixel"} 4.0' in text
    assert 'cm_test_seconds_count{route="/pixel"} 4.0' in text
    assert 'cm_test_seconds_sum{route="/pixel"} 6.0' in text
    assert histogram.count(("/pixel",)) == 4


def test_a_gauge_holds_what_was_set() -> None:
    metrics, registry = own_metrics()
    gauge = LabelledGauge("cm_test_depth", "Depth.", ("nid",), metrics)
    gauge.set(("a",), 7)
    gauge.inc(("a",), -2)
    assert 'cm_test_depth{nid="a"} 5.0' in generate_latest(registry).decode()


def test_worker_counts_are_a_mapping_that_writes_the_families() -> None:
    metrics, registry = own_metrics()
    counter = LabelledCounter("cm_test_events", "Events.", ("event", "label"), metrics)
    counts: WorkerCounts[tuple[str, str]] = WorkerCounts(lambda key: (counter, key), metrics)
    counts["match", "recorded"] += 1
    counts["match", "recorded"] += 1
    assert counts["match", "recorded"] == 2 and counts["bid", "nobid"] == 0
    assert ("bid", "nobid") not in counts and dict(counts) == {("match", "recorded"): 2}
    text = generate_latest(registry).decode()
    assert 'cm_test_events_total{event="match",label="recorded"} 2.0' in text


def test_closed_slots_are_forgotten_and_counting_starts_again() -> None:
    metrics, _ = own_metrics()
    counter = LabelledCounter("cm_test_again", "Again.", ("nid",), metrics)
    counts: WorkerCounts[tuple[str]] = WorkerCounts(lambda key: (counter, key), metrics)
    counter.inc(("a",))
    counts["b",] += 1
    metrics.close()  # as in a forked child: the slots written before are not this process's
    counter.inc(("a",))
    counts["b",] += 1
    assert counter.value(("a",)) == 1 and counts["b",] == 1


class _Tally:
    """Counts kept as a plain int, added to a counter when folded."""

    def __init__(self, counter: LabelledCounter) -> None:
        self.counter = counter
        self.pending = 0

    def fold(self) -> None:
        pending, self.pending = self.pending, 0
        if pending:
            self.counter.inc(("a",), pending)


def test_a_collection_folds_the_tallies_registered_before_it() -> None:
    metrics, registry = own_metrics()
    counter = LabelledCounter("cm_test_tallied", "Tallied.", ("nid",), metrics)
    tally = _Tally(counter)
    metrics.before_collect(tally.fold)
    tally.pending = 3
    assert 'cm_test_tallied_total{nid="a"} 3.0' in generate_latest(registry).decode()
    tally.pending = 2
    assert 'cm_test_tallied_total{nid="a"} 5.0' in generate_latest(registry).decode()


def test_a_tally_is_not_kept_alive_nor_folded_from_another_thread() -> None:
    metrics, registry = own_metrics()
    counter = LabelledCounter("cm_test_thread", "Tallied.", ("nid",), metrics)
    tally = _Tally(counter)
    metrics.before_collect(tally.fold)
    tally.pending = 4
    worker = threading.Thread(target=lambda: generate_latest(registry))
    worker.start()
    worker.join()
    assert tally.pending == 4  # the tally's own thread folds it, not a scrape elsewhere
    gone = weakref.ref(tally)
    del tally
    assert gone() is None
    generate_latest(registry)  # a fold whose object is gone is skipped
