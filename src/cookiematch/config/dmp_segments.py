"""``[[dmp.segments]]`` and ``[[dmp.destinations]]``: segments and export targets as data.

Rules are parsed (``dmp/segments/rules.py``) while loading, so a bad one stops the start with
``dmp.segments[0].rule.all[1].op: expected one of eq, ne, ...``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from cookiematch.config.values import Problems, Secret, url_problems
from cookiematch.dmp.exports.model import (
    Delivery,
    Destination,
    ExchangeUserListDestination,
    FileDestination,
    FileFormat,
    HttpDestination,
)
from cookiematch.dmp.segments.model import Segment
from cookiematch.dmp.segments.rules import parse_rule
from cookiematch.errors import RuleError
from cookiematch.formats import Id, VendorId

MIN_SECRET_LENGTH = 16
MAX_INTERVAL_MINUTES = 10_080  # a week: the longest schedule (recompute, export)
MIN_INTERVAL_MINUTES = 0.025  # 1.5 s: the shortest pull or export schedule (not a busy loop)
EXCHANGE_MAX_BATCH = 1000  # the exchange's bulk endpoint takes at most this many gids


class DmpSegmentConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[[dmp.segments]]``: ``id``, a ``rule`` (docs/dmp-data.md), an optional description."""

    id: Id
    rule: dict[str, Any]
    description: str = ""

    def problems(self) -> Problems:
        try:
            parse_rule(self.rule)
        except RuleError as exc:
            return [(exc.path, exc.reason)]
        return []

    def to_model(self) -> Segment:
        return Segment(self.id, parse_rule(self.rule), self.description)


class DmpDestinationConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[[dmp.destinations]]``: where a segment is exported (``kind`` picks the keys used)."""

    id: Id
    kind: Literal["http", "file", "exchange_user_list"] = "http"
    partner: Id | None = None  # whose IDs the destination receives; none: DMP uids
    url: str | None = None  # http: the endpoint; exchange_user_list: the exchange admin base
    secret: Secret | None = None  # http: the HMAC-SHA256 key, >= 16 characters
    path: str | None = None  # file: may use {segment}, {destination}, {time}, {mode}
    format: Literal["csv", "jsonl"] = "csv"
    token: Secret | None = None  # exchange_user_list: a credential of nid (or the admin token)
    user_list_id: Annotated[int, msgspec.Meta(gt=0)] | None = None
    nid: str | None = None  # exchange_user_list: the buyer whose gids the partner's IDs are
    cver: Annotated[int, msgspec.Meta(ge=0, le=255)] = 1
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    backoff_seconds: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.5
    # the receiver's IAB GVL vendor ID: under GDPR a profile goes only with its consent
    gvl_vendor_id: VendorId | None = None
    # The server exports these segments here (incremental) this long after the last export of
    # each; 0: only from the CLI or the admin API (docs/dmp-data.md).
    segments: tuple[Id, ...] = ()
    export_interval_minutes: Annotated[float, msgspec.Meta(ge=0, le=MAX_INTERVAL_MINUTES)] = 0

    def problems(self, partner_ids: set[str], segment_ids: set[str] | None = None) -> Problems:
        found: Problems = []
        if self.partner is not None and self.partner not in partner_ids:
            found.append(("partner", f"no partner has id {self.partner!r}"))
        for i, segment in enumerate(self.segments):
            if segment_ids is not None and segment not in segment_ids:
                found.append((f"segments[{i}]", f"no segment has id {segment!r}"))
        if 0 < self.export_interval_minutes < MIN_INTERVAL_MINUTES:
            found.append(
                ("export_interval_minutes", f"0 or at least {MIN_INTERVAL_MINUTES} (minutes)")
            )
        if self.export_interval_minutes and not self.segments:
            found.append(("segments", "required when export_interval_minutes is set"))
        required: dict[str, tuple[str, ...]] = {
            "http": ("url", "secret"),
            "file": ("path",),
            "exchange_user_list": ("url", "token", "user_list_id", "nid", "partner"),
        }
        found += [(k, f"required for kind {self.kind!r}") for k in required[self.kind]
                  if getattr(self, k) is None]  # fmt: skip
        found += url_problems("url", self.url)
        if self.secret is not None and len(self.secret.reveal()) < MIN_SECRET_LENGTH:
            found.append(("secret", f"must be at least {MIN_SECRET_LENGTH} characters"))
        if self.kind == "exchange_user_list" and self.batch_size > EXCHANGE_MAX_BATCH:
            found.append(("batch_size", f"the exchange takes at most {EXCHANGE_MAX_BATCH}"))
        return found

    def to_model(self) -> Destination:
        delivery = Delivery(
            batch_size=self.batch_size,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
        )
        if self.kind == "file":
            assert self.path is not None
            return FileDestination(
                self.id, self.path, FileFormat(self.format), self.partner, delivery,
                self.gvl_vendor_id,
            )  # fmt: skip
        assert self.url is not None
        if self.kind == "exchange_user_list":
            assert self.token and self.user_list_id and self.nid and self.partner
            return ExchangeUserListDestination(
                self.id, self.url, self.token.reveal(), self.user_list_id, self.nid,
                self.partner, self.cver, delivery, self.gvl_vendor_id,
            )  # fmt: skip
        assert self.secret is not None
        return HttpDestination(
            self.id, self.url, self.secret.reveal().encode(), self.partner, delivery,
            self.gvl_vendor_id,
        )  # fmt: skip


def segment_problems(
    segments: tuple[DmpSegmentConfig, ...],
    destinations: tuple[DmpDestinationConfig, ...],
    partner_ids: set[str],
) -> Problems:
    found: Problems = []
    for table, ids in (("segments", [s.id for s in segments]),
                       ("destinations", [d.id for d in destinations])):  # fmt: skip
        seen: set[str] = set()
        for i, value in enumerate(ids):
            if value in seen:
                found.append((f"{table}[{i}].id", f"duplicate id {value!r}"))
            seen.add(value)
    for i, segment in enumerate(segments):
        found += [(f"segments[{i}].{k}", m) for k, m in segment.problems()]
    segment_ids = {s.id for s in segments}
    for i, dest in enumerate(destinations):
        found += [(f"destinations[{i}].{k}", m) for k, m in dest.problems(partner_ids, segment_ids)]
    return found
