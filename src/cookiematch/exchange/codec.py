"""The JSON form of the exchange's entities: the registry's stored records, the admin API's
answers, and (through ``dec_hook``) the configuration file's entries.

The Structs of ``exchange/model.py`` are the format. Every field is written (``null`` when
unset); a compiled redirect template is written as its URL and compiled again when read, so a
record is validated as it is decoded. A ``Secret`` (a buyer's webhook secret) is written as
itself in the stored form (``encode``: the store must hold it for every worker) and as
``MASK`` in what people see (``encode_masked``: the admin API's answers).

``decode_stored`` reads what a store holds: keys the Struct does not know (written by a newer
version during a rolling upgrade) are left out, and records of the earlier shape (``nid``,
``redirect_url`` and ``hosted_match``, then only the keys that were set) decode as they are,
as long as they pass today's validation.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from cookiematch.errors import RedirectURLError
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.secret import MASK, Secret

__all__ = ["dec_hook", "decode", "decode_stored", "enc_hook", "encode", "encode_masked"]

T = TypeVar("T")
S = TypeVar("S", bound=msgspec.Struct)


def enc_hook(value: object) -> object:
    """The JSON value of a field type msgspec does not know: a template is its URL, a secret
    its value."""
    if isinstance(value, RedirectTemplate):
        return value.url
    if isinstance(value, Secret):
        return value.reveal()
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def _masked_hook(value: object) -> object:
    return MASK if isinstance(value, Secret) else enc_hook(value)


def dec_hook(tp: type, value: object) -> object:
    """A field of a type msgspec does not know from its JSON value: templates are compiled."""
    if tp is RedirectTemplate:
        if not isinstance(value, str):
            raise TypeError(f"Expected `str`, got `{type(value).__name__}`")
        try:
            return RedirectTemplate.compile(value)
        except RedirectURLError as exc:
            raise ValueError(str(exc)) from None
    if tp is Secret:
        return Secret.from_config(value)
    raise NotImplementedError(f"no decoder for {tp!r}")


_ENCODER = msgspec.json.Encoder(enc_hook=enc_hook)
_MASKED = msgspec.json.Encoder(enc_hook=_masked_hook)


def encode(value: object) -> bytes:
    """``value`` as JSON; the entities anywhere inside it in their stored form."""
    return _ENCODER.encode(value)


def encode_masked(value: object) -> bytes:
    """``value`` as JSON for people to see: the stored form with every secret ``MASK``."""
    return _MASKED.encode(value)


def decode(data: bytes, tp: type[T]) -> T:
    """A ``tp`` from JSON; raises ``msgspec.ValidationError`` naming the bad key."""
    return msgspec.json.decode(data, type=tp, dec_hook=dec_hook)


def decode_stored(data: bytes, tp: type[S]) -> S:
    """A ``tp`` from a stored record, keys it does not know left out; raises
    ``msgspec.ValidationError`` (or ``msgspec.DecodeError``) for a record it cannot use."""
    record = msgspec.json.decode(data)
    if not isinstance(record, dict):
        raise msgspec.ValidationError(f"expected a JSON object, got {type(record).__name__}")
    known = {field.encode_name for field in msgspec.structs.fields(tp)}
    kept = {key: value for key, value in record.items() if key in known}
    return msgspec.convert(kept, tp, dec_hook=dec_hook)
