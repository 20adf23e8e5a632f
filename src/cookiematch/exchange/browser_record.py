"""A small per-browser record: when its cookie was created and what each buyer got when.

One field map per browser, ``br:{tag}`` (same ``{hash tag}`` as the browser's other keys):

    created       unix seconds the exchange cookie was set (or first seen, for cookies set
                  before the record existed: cookie_age_seconds is then a lower bound)
    gid:<nid>     last time a gid reached buyer <nid>: a match-tag redirect or a pixel match
                  that came back (kept match_expiry_days; frequency-capping monitoring)
    push:<nid>    a pixel match offered to <nid> and not yet back (kept push_token_ttl_seconds)

Values are ASCII unix seconds. Field TTLs do the cleaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cookiematch.exchange.keys import browser_tag

CREATED = "created"
GID_PREFIX = "gid:"
PUSH_PREFIX = "push:"


def browser_record_key(browser_id: bytes) -> str:
    return f"br:{browser_tag(browser_id)}"


def gid_field(nid: str) -> str:
    return GID_PREFIX + nid


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
    def parse(cls, fields: Mapping[str, bytes]) -> BrowserRecord:
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
        return cls(created, gids, pushes)

    def gid_time(self, nid: str) -> int | None:
        return (self.gid_issued or {}).get(nid)

    def push_time(self, nid: str) -> int | None:
        return (self.push_pending or {}).get(nid)
