"""Everything a buyer's match table stores about some ids, found by scanning the store.

The table never scans (it finds a user from the user's own keys); tests scan every key and
field under the buyer's prefix (``bm:{nid}:``, both layouts) to check that an erasure left
nothing behind that names the uid or the gids, in either direction.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from cookiematch.buyer.ids import format_uid
from cookiematch.buyer.matchtable import MatchCodec, gid_bytes
from cookiematch.errors import StorageError
from cookiematch.storage import Store


def _gid_spellings(gid: str) -> set[str]:
    """How a gid appears: in a plain key, or as a bucket field."""
    raw = gid_bytes(gid)
    field = "." + gid if raw is None else base64.b85encode(raw).decode()
    return {gid, field}


def _names(direction: str, value: bytes, uids: set[bytes], gids: set[str]) -> bool:
    """Whether a stored value names one of the uids (a forward value) or gids (reverse)."""
    try:
        if direction == "g":
            return MatchCodec.unpack_by_gid("?", value).uid in uids
        if direction == "u":
            return MatchCodec.unpack_by_uid(bytes(16), value).gid in gids
    except StorageError:
        pass
    return False


async def stored_about(
    store: Store, nid: str, *, uids: Iterable[bytes] = (), gids: Iterable[str] = ()
) -> list[str]:
    """Every key or ``key/field`` under ``bm:{nid}:`` whose name or value names one of
    ``uids`` or ``gids``."""
    uid_set, gid_set = set(uids), set(gids)
    names = {format_uid(u) for u in uid_set} | {base64.b85encode(u).decode() for u in uid_set}
    for gid in gid_set:
        names |= _gid_spellings(gid)
    prefix = f"bm:{nid}:"
    found: list[str] = []
    async for key, value in store.scan(prefix):
        direction, _, name = key.removeprefix(prefix).partition(":")
        if name in names or _names(direction, value, uid_set, gid_set):
            found.append(key)
    async for key, fields in store.scan_maps(prefix):
        direction = key.removeprefix(prefix).partition(":")[0]
        for field, (value, _) in fields.items():
            if field in names or _names(direction, value, uid_set, gid_set):
                found.append(f"{key}/{field}")
    return found
