"""Answers of HTTP batches by ``Idempotency-Key``: a replay gets the first answer back.

The key is remembered per partner with a digest of the body; the same key with another body is
a client error (it would otherwise silently answer for data that was never applied).
"""

from __future__ import annotations

import hashlib

import msgspec

from cookiematch.dmp import keys
from cookiematch.storage.base import Store


class Remembered(msgspec.Struct, array_like=True, frozen=True):
    body_digest: str
    answer: bytes


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


_decoder = msgspec.msgpack.Decoder(Remembered)


class IdempotencyKeys:
    def __init__(self, store: Store, ttl_seconds: float) -> None:
        self._store = store
        self._ttl = ttl_seconds

    async def get(self, partner_id: str, key: str) -> Remembered | None:
        raw = await self._store.get(keys.idempotency_key(partner_id, key))
        if raw is None:
            return None
        try:
            return _decoder.decode(raw)
        except msgspec.DecodeError:
            return None

    async def put(self, partner_id: str, key: str, remembered: Remembered) -> None:
        value = msgspec.msgpack.encode(remembered)
        await self._store.set(keys.idempotency_key(partner_id, key), value, ttl=self._ttl)
