"""Prometheus counters of the exchange's browser-facing routes (served at ``/metrics``, added
up over the server's workers: ``web/counters.py``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cookiematch.exchange.enforcement import ACTIONS, EnforcementState
from cookiematch.exchange.list_changes import Change
from cookiematch.exchange.notice_delivery import NoticeEvent
from cookiematch.exchange.outcomes import RedirectToBuyer
from cookiematch.exchange.table_sizes import TableSizeLog
from cookiematch.web.counters import LabelledCounter, LabelledGauge

PIXEL_OUTCOMES = LabelledCounter(
    "cookiematch_pixel_outcomes",
    "Match tags answered, by buyer and outcome (redirect, error_<code>, error_1_privacy,"
    " set_cookie, push, push_not_stored, push_replayed, limited; edge_redirect: answered by"
    " the edge, edge_unreadable: a line of the edge's matches log that did not read)",
    ("nid", "outcome"),
)


def count_edge_matches(matches: Iterable[str], unreadable: Iterable[str]) -> None:
    """The match tags the edge answered (by nid) and its log lines that did not read."""
    for outcome, nids in (("edge_redirect", matches), ("edge_unreadable", unreadable)):
        for nid, n in Counter(nids).items():
            PIXEL_OUTCOMES.inc((nid, outcome), n)


BAD_REQUESTS = LabelledCounter(
    "cookiematch_bad_requests",
    "Browser requests answered 400, by reason",
    ("reason",),
)
EXTRAS_DROPPED = LabelledCounter(
    "cookiematch_extras_dropped",
    "Match tags whose extra parameters exceeded 1 KiB and were not forwarded",
    ("nid",),
)
HOSTED_MATCH_FAILURES = LabelledCounter(
    "cookiematch_hosted_match_failures",
    "Hosted match writes refused or failed, by buyer and google_hm status",
    ("nid", "status"),
)

BUYER_EVENTS = LabelledCounter(
    "cookiematch_buyer_events",
    "Per-buyer monitoring events of this worker (bid requests, outcomes, pixel matches, ...)",
    ("nid", "event"),
)

OPTOUTS = LabelledCounter(
    "cookiematch_optouts",
    "Opt-out page submissions by outcome (opted_out, undone, unchanged; failed: the store"
    " failed; refused: not posted from the page)",
    ("outcome",),
)
OPTOUT_NOTICES = LabelledCounter(
    "cookiematch_optout_notices",
    "Opt-out notices to buyers, by buyer and event (queued, delivered, failed_attempt, abandoned)",
    ("nid", "event"),
)
OPTOUT_NOTICE_QUEUE = LabelledGauge(
    "cookiematch_optout_notice_queue_depth",
    "Opt-out notices waiting for delivery, per buyer, as a live worker last read the queue",
    ("nid",),
    mode="latest",
)

USER_LIST_CHANGES = LabelledCounter(
    "cookiematch_user_list_changes",
    "User-list memberships added (google_ula or bulk), removed (bulk), or not added because"
    " their given time is older than the list's membership_days (expired), by list",
    ("list", "change"),
)


def count_list_change(list_id: int, change: Change, n: int) -> None:
    """``ListChanges``' ``on_count``."""
    USER_LIST_CHANGES.inc((list_id, change.value), n)


BUYER_ENFORCEMENT = LabelledGauge(
    "cookiematch_buyer_enforcement",
    "1 while an enforcement action (alert, throttle, suspend_pixel_matching) is active for a"
    " buyer, as a live worker last read the states",
    ("nid", "action"),
    mode="latest",
)


def enforcement_states(nids: Sequence[str], states: Mapping[str, EnforcementState]) -> None:
    """``Enforcer``'s ``on_states``: one gauge per buyer and action."""
    for nid in sorted({*nids, *states}):
        state = states.get(nid)
        for action in ACTIONS:
            BUYER_ENFORCEMENT.set((nid, action), 1 if state and action in state.actions else 0)


def count_notice(nid: str, event: NoticeEvent) -> None:
    """``NoticeDelivery``'s ``on_event``."""
    OPTOUT_NOTICES.inc((nid, event.value))


def count_queued(nids: Sequence[str]) -> None:
    """``NoticeQueue``'s ``on_queued`` (with waking the deliverer)."""
    for nid in nids:
        OPTOUT_NOTICES.inc((nid, NoticeEvent.QUEUED.value))


def notice_depth(nid: str, depth: int) -> None:
    """``NoticeDelivery``'s ``on_depth``."""
    OPTOUT_NOTICE_QUEUE.set((nid,), depth)


def record_redirect(outcome: RedirectToBuyer) -> None:
    if outcome.limited:
        label = "limited"  # over the buyer's match-tag rate: nothing done
    elif outcome.error is None:
        label = "redirect"
    elif outcome.privacy_refused:
        label = f"error_{outcome.error}_privacy"  # the privacy policy refused the tag
    elif outcome.push_replayed:
        label = "push_replayed"  # answered as an invalid token
    else:
        label = f"error_{outcome.error}"
    PIXEL_OUTCOMES.inc((outcome.nid, label))
    if outcome.extras_dropped:
        EXTRAS_DROPPED.inc((outcome.nid,))
    if outcome.hosted_match_status is not None:
        HOSTED_MATCH_FAILURES.inc((outcome.nid, str(outcome.hosted_match_status)))


class TableSizesCollector(Collector):
    """The hosted match table and the user lists as last measured (``exchange/table_sizes.py``;
    every worker reads the same measurement, so any worker's answer is the fleet's)."""

    def __init__(self, sizes: TableSizeLog) -> None:
        self._sizes = sizes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sizes = self._sizes.cached
        hosted = GaugeMetricFamily(
            "cookiematch_hosted_match_entries",
            "Hosted match entries stored, per buyer, as last measured",
            labels=["nid"],
        )
        members = GaugeMetricFamily(
            "cookiematch_user_list_members",
            "Browsers on each user list, as last measured",
            labels=["list"],
        )
        measured = GaugeMetricFamily(
            "cookiematch_table_sizes_measured_timestamp_seconds",
            "When the hosted match entries and user-list members were last counted (unix time)",
        )
        if sizes is not None:
            for nid, count in sorted(sizes.hosted.items()):
                hosted.add_metric([nid], count)
            for list_id, count in sorted(sizes.user_lists.items()):
                members.add_metric([list_id], count)
            measured.add_metric([], sizes.measured_at)
        yield hosted
        yield members
        yield measured
