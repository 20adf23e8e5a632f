"""Overlap and affinity: exact sets, and theta sketches within their printed bounds."""

from __future__ import annotations

import pytest

from cookiematch.dmp.overlap import (
    ExactAudiences,
    SketchAudiences,
    affinities,
    audiences_of,
    overlaps,
    relative_error,
)


def _fill(audiences: ExactAudiences | SketchAudiences, n: int) -> None:
    for i in range(n):
        names = []
        if i % 2 == 0:
            names.append("segment:even")
        if i % 3 == 0:
            names.append("segment:third")
        if i < n // 10:
            names.append("imp:c1")
            if i % 2 == 0:
                names.append("click:c1")
        audiences.add(f"uid{i}", names)


def test_exact_overlap_and_affinity() -> None:
    exact = ExactAudiences()
    _fill(exact, 600)
    pair = exact.pair("segment:even", "segment:third")
    assert (pair.size_a.value, pair.size_b.value, pair.both.value) == (300, 200, 100)
    assert pair.union.value == 400
    assert pair.jaccard == 0.25
    assert pair.affinity == pytest.approx(1.0)  # independent
    clicks = exact.pair("imp:c1", "click:c1")
    assert clicks.affinity == pytest.approx((30 / 60) / (30 / 600))  # clickers all saw it
    ranked = affinities(exact, "click:c1")
    assert ranked[0].b == "imp:c1"
    assert [p.b for p in overlaps(exact, ["segment:even", "imp:c1"])] == ["imp:c1"]


def test_audiences_of_a_profile() -> None:
    names = audiences_of({"gold"}, {"imp": {"c1": 2, "c2": 0}, "conv": {"c1": 1}})
    assert names == ["segment:gold", "imp:c1", "conv:c1"]


def test_sketches_agree_with_the_exact_figures_within_their_bounds() -> None:
    n = 200_000
    exact, sketch = ExactAudiences(), SketchAudiences()
    _fill(exact, n)
    _fill(sketch, n)
    bound = relative_error()
    assert bound == pytest.approx(2 / 64)
    for a, b in [("segment:even", "segment:third"), ("imp:c1", "segment:third")]:
        truth, estimate = exact.pair(a, b), sketch.pair(a, b)
        for field in ("size_a", "size_b", "both", "union"):
            t, e = getattr(truth, field).value, getattr(estimate, field)
            assert e.low <= t <= e.high, (a, b, field, t, e)
        assert estimate.size_a.value == pytest.approx(truth.size_a.value, rel=bound)
        assert estimate.affinity == pytest.approx(truth.affinity, rel=0.1)
    assert sketch.population_size().value == pytest.approx(n, rel=bound)


def test_sketches_survive_serialisation() -> None:
    sketch = SketchAudiences()
    _fill(sketch, 10_000)
    loaded = SketchAudiences.from_serialized(sketch.serialized())
    assert loaded.names() == sketch.names()
    assert loaded.pair("segment:even", "imp:c1").both == sketch.pair("segment:even", "imp:c1").both
    assert loaded.pair("x:unknown", "imp:c1").both.value == 0
