"""What every configuration table shares: the ``Table`` base and the shortest accepted token.

Value formats that the domain's Structs share too (network IDs, cookie names...) are in
``cookiematch/formats.py``.
"""

from __future__ import annotations

import msgspec

__all__ = ["MIN_ADMIN_TOKEN_LENGTH", "Table"]

MIN_ADMIN_TOKEN_LENGTH = 16


class Table(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every table: immutable, unknown keys rejected."""
