"""Formats that Structs of every layer validate, and the words a value that fails one gets.

msgspec checks them while it decodes a configuration file, an admin API body or a stored
record. ``PATTERN_MESSAGES`` replaces msgspec's "Expected `str` matching regex ..." in the
errors the configuration loader and the admin API report.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = [
    "ID_PATTERN",
    "PATTERN_MESSAGES",
    "CookieDomain",
    "CookieName",
    "Id",
    "Nid",
    "PositiveInt",
    "VendorId",
]

ID_PATTERN = r"^(?!\.\.?$)[A-Za-z0-9_.-]{1,64}$"  # never a path segment "." or ".."

Id = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
"""An identifier an operator chooses: a partner, client, segment, destination, campaign."""

Nid = Id
"""A buyer's network ID, the ``google_nid`` of its match tags."""

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]

VendorId = Annotated[int, msgspec.Meta(ge=1, le=65_535)]
"""A vendor's ID on the IAB's Global Vendor List (TCF)."""

# RFC 6265 cookie-name token; a host name with an optional leading dot.
CookieName = Annotated[str, msgspec.Meta(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")]
CookieDomain = Annotated[str, msgspec.Meta(pattern=r"^\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")]

PATTERN_MESSAGES = {
    ID_PATTERN: "must be 1-64 characters of A-Z a-z 0-9 _ . -, not . or ..",
}
