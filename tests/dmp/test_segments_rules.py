"""Segment rules: parsing with errors naming the key, and pure evaluation over snapshots."""

from __future__ import annotations

import pytest

from cookiematch.dmp.segments import Segment, evaluate, parse_rule
from cookiematch.dmp.snapshot import ProfileSnapshot
from cookiematch.errors import RuleError

NOW = 1_700_000_000.0
DAY = 86400.0

PROFILE = ProfileSnapshot(
    "u1",
    attributes={"tier": "gold", "age": 34, "vip": True, "tags": ["shoes", "bags"]},
    events={"purchase": (NOW - 2 * DAY, NOW - 40 * DAY), "email_open": (NOW - DAY, NOW - 3 * DAY)},
    exposures={"imp": {"c1": 3, "c2": 1}, "click": {"c1": 1}},
    partners={"analytics": "A-1"},
)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"attribute": "tier", "op": "eq", "value": "gold"}, True),
        ({"attribute": "tier", "value": "silver"}, False),
        ({"attribute": "tier", "op": "in", "value": ["silver", "gold"]}, True),
        ({"attribute": "tier", "op": "not_in", "value": ["gold"]}, False),
        ({"attribute": "missing", "op": "ne", "value": "x"}, True),
        ({"attribute": "age", "op": "gte", "value": 34}, True),
        ({"attribute": "age", "op": "gt", "value": 34}, False),
        ({"attribute": "age", "op": "lt", "value": 40.5}, True),
        ({"attribute": "tier", "op": "gt", "value": 1}, False),  # not a number
        ({"attribute": "vip", "value": True}, True),
        ({"attribute": "vip", "value": 1}, False),  # true is not 1
        ({"attribute": "tags", "value": "shoes"}, True),  # a list matches by element
        ({"attribute": "tags", "op": "ne", "value": "shoes"}, False),
        ({"attribute": "tags", "op": "in", "value": ["hats", "bags"]}, True),
        ({"attribute": "age", "op": "exists"}, True),
        ({"attribute": "nope", "op": "exists", "value": False}, True),
        ({"event": "purchase"}, True),
        ({"event": "purchase", "within_days": 30}, True),
        ({"event": "purchase", "within_days": 1}, False),
        ({"event": "purchase", "at_least": 2}, True),
        ({"event": "purchase", "within_days": 30, "at_least": 2}, False),
        ({"event": "email_open", "within_days": 7, "at_least": 2}, True),
        ({"event": "email_open", "at_least": 0, "at_most": 1}, False),
        ({"event": "never", "at_least": 0, "at_most": 0}, True),
        ({"exposed": "imp"}, True),
        ({"exposed": "imp", "campaign": "c1", "at_least": 3}, True),
        ({"exposed": "imp", "at_least": 5}, False),  # 4 over every campaign
        ({"exposed": "conv"}, False),
        ({"exposed": "click", "campaign": "c2"}, False),
        ({"synced": "analytics"}, True),
        ({"synced": "email"}, False),
        ({"all": []}, True),
        ({"any": []}, False),
        ({"not": {"synced": "email"}}, True),
        (
            {
                "all": [
                    {"event": "purchase", "within_days": 30},
                    {"event": "email_open", "at_least": 2},
                    {"any": [{"exposed": "click"}, {"attribute": "vip", "value": True}]},
                ]
            },
            True,
        ),
    ],
)
def test_evaluation(rule: dict[str, object], expected: bool) -> None:
    assert parse_rule(rule).matches(PROFILE, NOW) is expected


def test_events_in_the_future_do_not_count_in_a_window() -> None:
    profile = ProfileSnapshot("u", events={"purchase": (NOW + DAY,)})
    assert not parse_rule({"event": "purchase", "within_days": 30}).matches(profile, NOW)


def test_evaluate_returns_the_segments_that_hold() -> None:
    segments = [
        Segment("buyers", parse_rule({"event": "purchase", "within_days": 30})),
        Segment("emailers", parse_rule({"synced": "email"})),
    ]
    assert evaluate(segments, PROFILE, NOW) == {"buyers"}


@pytest.mark.parametrize(
    ("rule", "path", "reason"),
    [
        ("x", "rule", "expected a table"),
        ({}, "rule", "expected exactly one of"),
        ({"all": [], "any": []}, "rule", "found all, any"),
        ({"all": {"event": "x"}}, "rule.all", "expected a list"),
        ({"all": [{"event": "x"}, {"attribute": "a", "op": "like", "value": 1}]},
         "rule.all[1].op", "expected one of eq"),
        ({"any": [{"not": {"event": ""}}]}, "rule.any[0].not.event", "1-128"),
        ({"attribute": "a", "op": "in", "value": "x"}, "rule.value", "takes a list"),
        ({"attribute": "a", "op": "gt", "value": "3"}, "rule.value", "takes a number"),
        ({"attribute": "a", "op": "eq"}, "rule.value", "required"),
        ({"attribute": "a", "op": "in", "value": [1, {}]}, "rule.value[1]", "expected a string"),
        ({"event": "p", "within_days": 0}, "rule.within_days", "positive"),
        ({"event": "p", "at_least": -1}, "rule.at_least", "non-negative"),
        ({"event": "p", "at_least": 3, "at_most": 2}, "rule.at_most", "below at_least"),
        ({"event": "p", "at_least": 0}, "rule.at_least", "always holds"),
        ({"event": "p", "days": 3}, "rule.days", "unknown key"),
        ({"exposed": "view"}, "rule.exposed", "imp, click, conv"),
        ({"synced": 3}, "rule.synced", "1-128"),
    ],
)  # fmt: skip
def test_errors_name_the_key(rule: object, path: str, reason: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule(rule)
    assert caught.value.path == path
    assert reason in caught.value.reason


def test_depth_and_size_are_bounded() -> None:
    deep: dict[str, object] = {"synced": "x"}
    for _ in range(20):
        deep = {"not": deep}
    with pytest.raises(RuleError, match="nest at most"):
        parse_rule(deep)
    with pytest.raises(RuleError, match="at most 256 nodes"):
        parse_rule({"any": [{"synced": "x"}] * 300})
