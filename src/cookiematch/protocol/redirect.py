"""Buyer redirect URLs: validated and compiled once, rendered per request with macros."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cookiematch.protocol.query import QueryParam

MAX_REDIRECT_URL_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class ResponseParams:
    """The ``google_`` response parameters of one redirect (values not yet encoded)."""

    gid: str | None = None
    cver: int | None = None
    user_lists: tuple[tuple[str, int], ...] = ()  # (list id as received, status)
    hosted_match: int | None = None  # status, only on failure
    error: int | None = None
    push: str | None = None  # used by the exchange's pixel-matching URLs


class RedirectTemplate:
    """A buyer's base URL, validated (absolute http/https, host, no fragment, no userinfo,
    <= 2048 chars, known macros) and split into literal parts and macros at compile time.

    ``compile`` raises RedirectURLError.
    """

    @classmethod
    def compile(cls, url: str) -> RedirectTemplate:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """The URL as configured."""
        raise NotImplementedError

    def render(
        self,
        scheme: str,
        response: ResponseParams,
        extras: Sequence[QueryParam] = (),
        *,
        extras_first: bool = True,
    ) -> str:
        """The full redirect URL: scheme replaced, macros expanded, the rest appended."""
        raise NotImplementedError
