"""The in-band (pixel-to-pixel) path, kept for comparison with server-to-server ingestion.

The partner's redirect carries its ID and data in the URL:
``/inband/<partner>?uid=<id>&kv=<key>:<value>,<key>:<value>``. Keys are 1-32 characters of
``a-z 0-9 _``, values 1-64 of ``A-Z a-z 0-9 _ . ~ -``; at most ``inband_max_pairs`` pairs
and ``inband_max_bytes`` of query string: the limits a redirect imposes on what it can carry.
"""

from __future__ import annotations

import re

from cookiematch.dmp import keys
from cookiematch.errors import QueryError
from cookiematch.storage.base import Store

_KEY = re.compile(r"[a-z0-9_]{1,32}")
_VALUE = re.compile(r"[A-Za-z0-9_.~-]{1,64}")


def parse_kv(text: str, *, max_pairs: int) -> dict[str, str]:
    """``"age:30,tier:gold"`` -> ``{"age": "30", "tier": "gold"}``; raises QueryError."""
    pairs: dict[str, str] = {}
    if not text:
        return pairs
    pieces = text.split(",")
    if len(pieces) > max_pairs:
        raise QueryError(f"kv carries more than {max_pairs} pairs")
    for piece in pieces:
        key, colon, value = piece.partition(":")
        if not colon or _KEY.fullmatch(key) is None or _VALUE.fullmatch(value) is None:
            raise QueryError("kv must be key:value pairs separated by ','")
        pairs[key] = value
    return pairs


class InbandData:
    """Key-values received in-band, per profile and partner."""

    def __init__(self, store: Store, ttl_seconds: float) -> None:
        self._store = store
        self._ttl = ttl_seconds

    async def record(self, partner_id: str, dmp_uid: str, pairs: dict[str, str]) -> None:
        if pairs:
            mapping = {f"{partner_id}.{k}": v.encode() for k, v in pairs.items()}
            await self._store.hset(keys.inband_key(dmp_uid), mapping, ttl=self._ttl)

    async def get(self, dmp_uid: str) -> dict[str, dict[str, str]]:
        """``{partner: {key: value}}``."""
        raw = await self._store.hgetall(keys.inband_key(dmp_uid))
        found: dict[str, dict[str, str]] = {}
        for field, value in raw.items():
            partner_id, _, key = field.partition(".")
            found.setdefault(partner_id, {})[key] = value.decode("utf-8", "replace")
        return found
