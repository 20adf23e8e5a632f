"""The DMP's match table: partner ID <-> DMP ID, both ways, with the time of the last sync."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from cookiematch.dmp import keys
from cookiematch.dmp.change_marks import MARKING, ChangeMarks
from cookiematch.storage.base import FieldWrite, Store, Write
from cookiematch.storage.coalesce import SwapCoalescer


class PartnerMatch(msgspec.Struct, array_like=True, frozen=True):
    """A partner's ID for a browser and when it was last received."""

    uid: str
    at: float


class ReverseMatch(msgspec.Struct, array_like=True, frozen=True):
    dmp_uid: str
    at: float


_match_decoder = msgspec.json.Decoder(PartnerMatch)
_reverse_decoder = msgspec.json.Decoder(ReverseMatch)
_encode = msgspec.json.encode


class MatchTable:
    """Reads and writes matches in the store."""

    def __init__(self, store: Store, ttl_seconds: float, marks: ChangeMarks = MARKING) -> None:
        self._store = store
        self._swaps = SwapCoalescer(store)  # the matches of a turn of the loop: one store call
        self._ttl = ttl_seconds
        self._marks = marks

    async def partners(self, dmp_uid: str) -> dict[str, PartnerMatch]:
        """Every partner's match for this browser (undecodable entries are skipped)."""
        raw = await self._store.hgetall(keys.partners_key(dmp_uid))
        found: dict[str, PartnerMatch] = {}
        for partner_id, value in raw.items():
            try:
                found[partner_id] = _match_decoder.decode(value)
            except msgspec.DecodeError:
                continue
        return found

    async def record(
        self,
        partner_id: str,
        dmp_uid: str,
        partner_uid: str,
        now: float,
        also: FieldWrite | None = None,
        read_after: Sequence[str] = (),
    ) -> list[dict[str, bytes]]:
        """Store the match both ways (and ``also``, another field write of the request) in
        one store call (with the other matches of this turn of the event loop:
        ``SwapCoalescer``), which answers the partner ID it replaces (``swap_together``: the
        read folded into the write) and the maps of ``read_after`` as they stand once the
        match is stored (returned); a superseded partner ID then loses its reverse entry. The
        change mark and ``also`` go in the same call, nothing read for them."""
        forward: FieldWrite = (
            keys.partners_key(dmp_uid),
            {partner_id: _encode(PartnerMatch(partner_uid, now))},
            self._ttl,
        )
        reverse = Write(
            keys.reverse_key(partner_id, partner_uid),
            _encode(ReverseMatch(dmp_uid, now)),
            self._ttl,
        )
        marks = self._marks.write(dmp_uid, now)  # the profile changed (change_marks.py)
        quiet = marks if also is None else (also, *marks)
        answer = await self._swaps.swap_together((reverse,), (forward,), read_after, quiet)
        previous = answer[0].get(partner_id)
        old = None
        if previous is not None:
            try:
                old = _match_decoder.decode(previous).uid
            except msgspec.DecodeError:
                old = None
        if old is not None and old != partner_uid:
            await self._delete_reverse(partner_id, old, dmp_uid)
        return answer[1:]

    async def _delete_reverse(self, partner_id: str, partner_uid: str, dmp_uid: str) -> None:
        key = keys.reverse_key(partner_id, partner_uid)
        if await self.dmp_uid_for(partner_id, partner_uid) == dmp_uid:
            await self._store.delete(key)

    async def dmp_uid_for(self, partner_id: str, partner_uid: str) -> str | None:
        raw = await self._store.get(keys.reverse_key(partner_id, partner_uid))
        if raw is None:
            return None
        try:
            return _reverse_decoder.decode(raw).dmp_uid
        except msgspec.DecodeError:
            return None
