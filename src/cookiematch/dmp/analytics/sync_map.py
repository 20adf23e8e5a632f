"""A partner's sync map, exported from the key-value store for the engine: every live reverse
entry ``dmp:pid:{<partner>:<uid>}`` (``dmp/keys.py``) as ``(partner uid, DMP uid)``.

The key-value store stays the source of truth (callbacks write it); ingestion on the engine
resolves partner uids by a join against this snapshot, taken once per run, where the
per-record path asks the store (``dmp/ingest/resolver.py``). Entries that do not decode are left
out, as the resolver leaves them out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import unquote

import msgspec

from cookiematch.dmp import keys
from cookiematch.dmp.matches import ReverseMatch
from cookiematch.storage.base import Store

SCAN_BATCH = 5000  # keys read per step of the scan

_reverse = msgspec.json.Decoder(ReverseMatch)


def reverse_prefix(partner_id: str) -> str:
    """The prefix of every reverse entry of ``partner_id``."""
    return keys.reverse_key(partner_id, "").removesuffix("}")


async def sync_pairs(
    store: Store, partner_id: str, *, batch: int = SCAN_BATCH
) -> AsyncIterator[list[tuple[str, str]]]:
    """The partner's ``(partner uid, DMP uid)`` pairs, ``batch`` keys at a time."""
    prefix = reverse_prefix(partner_id)
    found: list[tuple[str, str]] = []
    async for key, raw in store.scan(prefix, batch=batch):
        if not key.endswith("}"):
            continue
        try:
            dmp_uid = _reverse.decode(raw).dmp_uid
        except msgspec.DecodeError:
            continue
        found.append((unquote(key[len(prefix) : -1]), dmp_uid))
        if len(found) >= batch:
            yield found
            found = []
    if found:
        yield found
