"""Status codes of the Cookie Matching protocol, as they appear in redirects."""

from __future__ import annotations

from enum import IntEnum


class MatchError(IntEnum):
    """Values of ``google_error``: the request as a whole failed, nothing was done."""

    OPTED_OUT = 1
    NO_OPERATION = 2
    NO_COOKIE = 3
    CONFLICT = 4
    INVALID_PUSH = 5


class UserListStatus(IntEnum):
    """Second field of each ``google_ula=<list id>,<status>`` in a redirect."""

    OK = 0
    PERMISSION_DENIED = 2
    BAD_LIST_ID = 5
    CLOSED = 6
    INTERNAL_ERROR = 10


class HostedMatchStatus(IntEnum):
    """Value of ``google_hm`` in a redirect: present only when the hosted write failed."""

    FORBIDDEN = 1
    DECODE_ERROR = 2
    TOO_LONG = 3
    INTERNAL_ERROR = 4
    THROTTLED = 5
