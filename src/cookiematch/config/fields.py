"""What every configuration table shares: the ``Table`` base, the shortest accepted token and
the store deadlines of every role's table (``store_deadline_ms``, ``admin_store_deadline_ms``).

Value formats that the domain's Structs share too (network IDs, cookie names...) are in
``cookiematch/formats.py``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = [
    "ADMIN_STORE_DEADLINE_MS",
    "MIN_ADMIN_TOKEN_LENGTH",
    "STORE_DEADLINE_MS",
    "DeadlineMs",
    "Table",
]

MIN_ADMIN_TOKEN_LENGTH = 16

DeadlineMs = Annotated[int, msgspec.Meta(ge=1, le=60_000)]
"""A store call's deadline in milliseconds (``storage/guard.py``)."""
STORE_DEADLINE_MS = 50  # a browser-facing request's store calls: a pixel stays under ~100 ms
ADMIN_STORE_DEADLINE_MS = 1000  # an admin API request's store calls


class Table(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every table: immutable, unknown keys rejected."""
