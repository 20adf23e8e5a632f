"""What the DMP holds about one browser: access and erasure (``privacy/subjects.py``).

A subject is a DMP uid (the DMP cookie's value: 22 characters of base64url), or
``partner:<partner id>:<partner uid>``: a partner's ID, with the browser its reverse entry names
(if any) and the records that wait for its sync.

Records, by kind (keys: ``dmp/keys.py``):

    partner_id          dmp:{uid}:p                 field per partner: its ID and last sync
    event               dmp:{uid}:e                 impression-pixel tallies
    inband              dmp:{uid}:kv                in-band key-values
    consent_mark        dmp:{uid}:g                 GDPR consent marks
    trait               dmp:{uid}:t                 ingested attributes and events
    segment             dmp:{uid}:s                 segment memberships
    partner_id_reverse  dmp:pid:{partner:puid}      partner ID -> this uid
    pending_record      dmp:pend:{partner:puid}     ingested records waiting for the sync
    segment_member      dmps:{segment:shard}:m      the uid's field in the member index an
                                                    earlier version kept (``dmp/retired.py``)
    export_sent         dmpx:{segment:dest:shard}:sent  the ID a destination was last sent

Erasure removes them in an order that a repeat can finish when the store fails half-way: the
export state first (each sent ID moves to the segment's removal list, so the destination is
told to remove it by the next export: ``dmp/exports/state.py``), then the entries of the
retired member index (until ``migrate-to-engine`` deletes it or it lapses), the partner IDs' reverse
entries (those naming this uid) and pending records, and the profile's own maps last (the
partner map, read first, says what else to remove). With an analytics engine, the erasure
marks the browser changed and stages the erasure of its traits: the engine's next job drops
them, and its refresh, finding no map left, removes the browser with its memberships
(``dmp/analytics/refresh.py``). A segment's sketch holds hashes, no ID: nothing to erase there.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import msgspec

from cookiematch.clock import Clock
from cookiematch.dmp import keys
from cookiematch.dmp.analytics.lookup import RETRY_AFTER
from cookiematch.dmp.analytics.rows import ProfileRows, live
from cookiematch.dmp.change_marks import MARKING, ChangeMarks
from cookiematch.dmp.ingest.records import uid_ok
from cookiematch.dmp.matches import MatchTable, PartnerMatch
from cookiematch.dmp.retired import member_index_key
from cookiematch.dmp.segment_exports import SegmentExports
from cookiematch.dmp.traits.fields import ATTRIBUTE, event_field
from cookiematch.dmp.traits.staging import StagedUpdate, TraitStaging
from cookiematch.errors import Busy, InvalidSubject, TryLater
from cookiematch.formats import ID_PATTERN
from cookiematch.privacy.subjects import (
    ErasureReport,
    HeldKey,
    StoredRecord,
    SubjectReport,
    read_held,
    render_bytes,
)
from cookiematch.protocol.cookies import parse_browser_id
from cookiematch.storage.base import Store

__all__ = ["KINDS", "PARTNER_PREFIX", "DmpSubjects", "StoredSubjects"]

PARTNER_PREFIX = "partner:"
PROFILE_KINDS = {  # kind -> the key of the browser's map
    "partner_id": keys.partners_key,
    "event": keys.events_key,
    "inband": keys.inband_key,
    "consent_mark": keys.consent_key,
    "trait": keys.traits_key,
    "segment": keys.membership_key,
}
KINDS = (
    *PROFILE_KINDS,
    "partner_id_reverse",
    "pending_record",
    "segment_member",
    "export_sent",
)
ENGINE_KEY = "analytics:"
"""How an access report names the analytics engine's traits of a browser (``analytics:<uid>``)."""
EngineProfile = Callable[[str], Awaitable[ProfileRows | None]]
"""What the analytics engine holds of one browser (``EngineRuns.traits``)."""
_PARTNER_ID = re.compile(ID_PATTERN)
_match_decoder = msgspec.json.Decoder(PartnerMatch)


def render_json(raw: bytes) -> object:
    """A JSON value as decoded; anything else as ``render_bytes`` shows it."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return render_bytes(raw)


def render_msgpack(raw: bytes) -> object:
    try:
        return msgspec.msgpack.decode(raw)
    except msgspec.DecodeError:
        return render_bytes(raw)


@dataclass(frozen=True, slots=True)
class Subject:
    """A parsed subject: the DMP uid, or a partner's ID (``dmp_uid`` None until resolved)."""

    dmp_uid: str | None
    partner: tuple[str, str] | None = None


class DmpSubjects:
    """Access and erasure over the DMP's store (a ``SubjectData``)."""

    role = "dmp"

    def __init__(
        self,
        store: Store,
        matches: MatchTable,
        exports: SegmentExports,
        partner_ids: Iterable[str],
        *,
        clock: Clock = time.time,
        marks: ChangeMarks = MARKING,
        staging: TraitStaging | None = None,
        engine_traits: EngineProfile | None = None,
    ) -> None:
        self._store = store
        # the engine owns the traits: access reads them there, an erasure is staged for it
        self._staging = staging
        self._engine_traits = engine_traits
        self._matches = matches
        self._exports = exports
        self._partners = frozenset(partner_ids)
        self._clock = clock
        self._marks = marks

    def replace_partners(self, partner_ids: Iterable[str]) -> None:
        """Know these partners from now on (the admin API changed them)."""
        self._partners = frozenset(partner_ids)

    def parse(self, subject: str) -> Subject:
        """The subject of an identifier; InvalidSubject if it is neither form."""
        if subject.startswith(PARTNER_PREFIX):
            partner, _, uid = subject.removeprefix(PARTNER_PREFIX).partition(":")
            if _PARTNER_ID.fullmatch(partner) is None or not uid_ok(uid):
                raise InvalidSubject(
                    "expected partner:<partner id>:<partner uid> (1-256 printable characters)"
                )
            if partner not in self._partners:
                raise InvalidSubject(f"no partner has id {partner!r}")
            return Subject(None, (partner, uid))
        if parse_browser_id(subject) is None:
            raise InvalidSubject(
                "expected a DMP uid (22 characters of base64url, the DMP cookie's value) or "
                "partner:<partner id>:<partner uid>"
            )
        return Subject(subject)

    async def resolve(self, subject: str) -> Subject:
        """The parsed subject with its DMP uid (a partner ID's, by its reverse entry)."""
        parsed = self.parse(subject)
        if parsed.partner is None:
            return parsed
        return Subject(await self._matches.dmp_uid_for(*parsed.partner), parsed.partner)

    async def access(self, subject: str, *, engine: bool = True) -> SubjectReport:
        """What is held about ``subject``; with ``engine`` False, the key-value store's alone
        (the analytics engine is neither opened nor waited for: traits it owns are left out)."""
        target = await self.resolve(subject)
        records: list[StoredRecord] = []
        partner_ids: list[tuple[str, str]] = []
        if target.dmp_uid is not None:
            uid = target.dmp_uid
            profile = [
                HeldKey(kind, key(uid), is_map=True, render=render_json)
                for kind, key in PROFILE_KINDS.items()
            ]
            records += await read_held(self._store, profile)
            if engine:
                records += await self._engine_records(uid)
            partner_ids = _partner_ids(r for r in records if r.kind == "partner_id")
            joined = [r.field for r in records if r.kind == "segment" and r.field is not None]
            records += await self._index_records(uid, joined)
            records += await self._export_records(uid)
        if target.partner is not None and target.partner not in partner_ids:
            partner_ids.append(target.partner)
        records += await self._partner_records(target.dmp_uid, partner_ids)
        return SubjectReport(role=self.role, subject=subject, records=records)

    async def erase(self, subject: str) -> ErasureReport:
        target = await self.resolve(subject)
        erased: Counter[str] = Counter(dict.fromkeys(KINDS, 0))
        notified: list[str] = []
        if target.dmp_uid is not None:
            notified = await self._erase_browser(target.dmp_uid, erased)
        if target.partner is not None:
            await self._erase_partner_id(*target.partner, target.dmp_uid, erased)
        return ErasureReport(
            role=self.role, subject=subject, erased=dict(erased), notified=notified
        )

    # --- access -------------------------------------------------------------------------

    async def _engine_records(self, uid: str) -> list[StoredRecord]:
        """The browser's traits as the analytics engine holds them (when it owns them), as
        the ``t`` map's fields would show them; ``TryLater`` when another job keeps the engine
        (as the profile look-up answers)."""
        if self._engine_traits is None:
            return []
        try:
            held = await self._engine_traits(uid)
        except Busy as exc:
            raise TryLater(
                f"{exc}; the browser's traits are in the engine", retry_after=RETRY_AFTER
            ) from exc
        if held is None:
            return []
        now, key = self._clock(), f"{ENGINE_KEY}{uid}"

        def left(expires_at: float | None) -> float | None:
            return None if expires_at is None else expires_at - now

        records = [
            StoredRecord(kind="trait", key=key, field=f"{ATTRIBUTE}{name}", value=row.value,
                         expires_in_seconds=left(row.expires_at))
            for name, row in sorted(held.attributes.items())
            if live(row.expires_at, now)
        ]  # fmt: skip
        records += [
            StoredRecord(kind="trait", key=key, field=event_field(e.name, int(e.ts)),
                         value=e.ts, expires_in_seconds=left(e.expires_at))
            for e in held.events
            if live(e.expires_at, now)
        ]  # fmt: skip
        return records

    async def _partner_records(
        self, uid: str | None, partner_ids: Sequence[tuple[str, str]]
    ) -> list[StoredRecord]:
        """The reverse entries and pending records of partner IDs no other browser holds."""
        records: list[StoredRecord] = []
        for partner, partner_uid in partner_ids:
            if await self._matches.dmp_uid_for(partner, partner_uid) in (uid, None):
                records += await read_held(self._store, _partner_held(partner, partner_uid))
        return records

    async def _index_records(self, uid: str, joined: Sequence[str]) -> list[StoredRecord]:
        """The uid's entries in the retired member index, where it is still stored."""
        shard = keys.shard_of(uid)
        records: list[StoredRecord] = []
        for segment in sorted(self._exports.segment_ids | set(joined)):
            key = member_index_key(segment, shard)
            entry = (await self._store.hgetall_entries(key)).get(uid)
            if entry is not None:
                records.append(_field_record("segment_member", key, uid, entry))
        return records

    async def _export_records(self, uid: str) -> list[StoredRecord]:
        shard = keys.shard_of(uid)
        records: list[StoredRecord] = []
        for segment, destination in self._export_pairs():
            entry = (await self._exports.state(segment, destination).shard_entries(shard)).get(uid)
            if entry is not None:
                key = keys.sent_key(segment, destination, shard)
                records.append(_field_record("export_sent", key, uid, entry))
        return records

    # --- erasure ------------------------------------------------------------------------

    async def _erase_browser(self, uid: str, erased: Counter[str]) -> list[str]:
        """Erase one DMP uid (the order of the module's docstring); the destinations told."""
        partner_map = await self._store.hgetall(keys.partners_key(uid))
        joined = await self._store.hgetall(keys.membership_key(uid))
        notified: list[str] = []
        now = self._clock()
        for segment, destination in self._export_pairs():
            if await self._exports.state(segment, destination).erase(uid, now) is not None:
                erased["export_sent"] += 1
                notified.append(f"{destination} (segment {segment})")
        shard = keys.shard_of(uid)
        for segment in sorted(self._exports.segment_ids | set(joined)):
            removed = await self._store.hdel(member_index_key(segment, shard), [uid])
            erased["segment_member"] += removed
        for partner, raw in sorted(partner_map.items()):
            try:
                partner_uid = _match_decoder.decode(raw).uid
            except msgspec.DecodeError:
                continue
            await self._erase_partner_id(partner, partner_uid, uid, erased)
        for kind, key in PROFILE_KINDS.items():
            if kind == "partner_id":
                fields = partner_map
            else:
                fields = await self._store.hgetall(key(uid))
            await self._store.delete(key(uid))
            erased[kind] += len(fields)
        marks = self._marks.write(uid, now)
        if marks:  # the engine forgets it too
            await self._store.hset_many(marks)
        if self._staging is not None:  # and its traits, before any update staged later
            erasure = StagedUpdate(uid, "", now, {}, (), (), erase=True)
            await asyncio.to_thread(self._staging.append, [erasure])
        return notified

    async def _erase_partner_id(
        self, partner: str, partner_uid: str, uid: str | None, erased: Counter[str]
    ) -> None:
        """A partner ID's reverse entry (when it names ``uid``) and pending records (when no
        other browser holds the ID)."""
        owner = await self._matches.dmp_uid_for(partner, partner_uid)
        if owner is not None and owner != uid:
            return
        if owner is not None and await self._store.delete(keys.reverse_key(partner, partner_uid)):
            erased["partner_id_reverse"] += 1
        pending = keys.pending_key(partner, partner_uid)
        erased["pending_record"] += len(await self._store.hgetall(pending))
        await self._store.delete(pending)

    def _export_pairs(self) -> list[tuple[str, str]]:
        return [
            (segment, destination)
            for segment in sorted(self._exports.segment_ids)
            for destination in sorted(self._exports.destinations)
        ]


def _partner_ids(records: Iterable[StoredRecord]) -> list[tuple[str, str]]:
    """(partner, partner uid) of the ``partner_id`` records."""
    found: list[tuple[str, str]] = []
    for record in records:
        value = record.value
        if record.field is not None and isinstance(value, list) and value:
            partner_uid = value[0]
            if isinstance(partner_uid, str):
                found.append((record.field, partner_uid))
    return found


def _partner_held(partner: str, partner_uid: str) -> list[HeldKey]:
    return [
        HeldKey("partner_id_reverse", keys.reverse_key(partner, partner_uid), render=render_json),
        HeldKey(
            "pending_record",
            keys.pending_key(partner, partner_uid),
            is_map=True,
            render=render_msgpack,
        ),
    ]


def _field_record(
    kind: str, key: str, field: str, entry: tuple[bytes, float | None]
) -> StoredRecord:
    raw, ttl = entry
    return StoredRecord(
        kind=kind, key=key, field=field, value=render_bytes(raw), expires_in_seconds=ttl
    )


class StoredSubjects:
    """``DmpSubjects`` as a browser-facing page asks it: the access report from the key-value
    store alone (the analytics engine is never opened, refreshed or waited for there: a page
    view must not hold the engine from its jobs, nor wait for them), the erasure unchanged
    (it stages the engine's part, ``DmpSubjects.erase``)."""

    role = "dmp"

    def __init__(self, subjects: DmpSubjects) -> None:
        self._subjects = subjects

    async def access(self, subject: str) -> SubjectReport:
        return await self._subjects.access(subject, engine=False)

    async def erase(self, subject: str) -> ErasureReport:
        return await self._subjects.erase(subject)
