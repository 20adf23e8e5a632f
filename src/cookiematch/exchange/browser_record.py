"""A small per-browser record: when its cookie was created and which pixel matches are out.

One field map per browser, ``br:{tag}`` (same ``{hash tag}`` as the browser's other keys):

    created       unix seconds the exchange cookie was set (or first seen, for cookies set
                  before the record existed: cookie_age_seconds is then a lower bound)
    push:<nid>    a pixel match offered to <nid> and not yet back (kept push_token_ttl_seconds)

The last time a gid reached each buyer is a key of its own, ``gt:{tag}:<nid>``
(``keys.gid_time_key``): the frequency-capping checks swap it with one native command instead
of a script over this map. Records written before it have ``gid:<nid>`` fields, which
``BrowserRecord.parse`` still reads until they expire (``match_expiry_days``).

Values are ASCII unix seconds. Field TTLs do the cleaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cookiematch.exchange.keys import browser_tag

CREATED = "created"
GID_PREFIX = "gid:"
"""The fields of records written before the gid times had keys of their own."""
PUSH_PREFIX = "push:"


def browser_record_key(browser_id: bytes) -> str:
    return record_key_of(browser_tag(browser_id))


def record_key_of(tag: str) -> str:
    """``browser_record_key`` from the browser's tag, for a caller that has it already."""
    return f"br:{tag}"


def push_field(nid: str) -> str:
    return PUSH_PREFIX + nid


def seconds(value: int) -> bytes:
    return str(value).encode()


@dataclass(frozen=True, slots=True)
class BrowserRecord:
    """The parsed record; times are unix seconds."""

    created: int | None = None
    gid_issued: Mapping[str, int] | None = None
    push_pending: Mapping[str, int] | None = None

    @classmethod
    def parse(
        cls, fields: Mapping[str, bytes], gid_times: Mapping[str, bytes | None] | None = None
    ) -> BrowserRecord:
        """The record from its map's ``fields`` and the ``gt:`` keys read for it (``nid`` ->
        value, None where absent); of a record's old ``gid:`` field and its key, the later
        time counts."""
        created: int | None = None
        gids: dict[str, int] = {}
        pushes: dict[str, int] = {}
        for name, raw in fields.items():
            try:
                value = int(raw)
            except ValueError:
                continue  # a damaged field is treated as absent
            if name == CREATED:
                created = value
            elif name.startswith(GID_PREFIX):
                gids[name[len(GID_PREFIX) :]] = value
            elif name.startswith(PUSH_PREFIX):
                pushes[name[len(PUSH_PREFIX) :]] = value
        for nid, held in (gid_times or {}).items():
            if held is not None and held.isdigit():
                gids[nid] = max(int(held), gids.get(nid, 0))
        return cls(created, gids, pushes)

    def gid_time(self, nid: str) -> int | None:
        return (self.gid_issued or {}).get(nid)

    def push_time(self, nid: str) -> int | None:
        return (self.push_pending or {}).get(nid)
