from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from cookiematch.web.counters import LabelledCounter


def test_labelled_counter_exposes_what_it_counted() -> None:
    registry = CollectorRegistry()
    counter = LabelledCounter("cm_test_outcomes", "Outcomes.", ("nid", "outcome"), registry)
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
    registry = CollectorRegistry()
    counter = LabelledCounter("cm_test_reasons", "Reasons.", ("reason",), registry)
    counter.inc(('quote"and\\slash',))
    text = generate_latest(registry).decode()
    assert 'cm_test_reasons_total{reason="quote\\"and\\\\slash"} 1.0' in text
