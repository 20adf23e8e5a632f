"""The browser as the first trusted proxy saw it: one reader for every role's handlers.

Behind a proxy (TLS, load balancing) a request's peer is the proxy; a proxy listed in the role's
``trusted_proxies`` may tell the original scheme (``X-Forwarded-Proto``) and address
(``X-Forwarded-For``). Nobody else may: with no trusted proxy both headers are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable

from cookiematch.protocol.forwarded import TrustedProxies, forwarded_client, forwarded_scheme
from cookiematch.web.http import Request, RequestHeaders

__all__ = ["ProxyTrust"]


class ProxyTrust:
    """The browser's scheme and address for a request, per the role's trusted proxies."""

    def __init__(self, trusted: Iterable[str] = ()) -> None:
        self._trusted = TrustedProxies(trusted)
        self.trusting = bool(self._trusted)
        """Whether any proxy is trusted (else the scheme and address are the connection's)."""

    def scheme(self, request: Request) -> str:
        return self.scheme_of(request.scheme, request.client, request.headers)

    def scheme_of(self, scheme: str, client: str, headers: RequestHeaders) -> str:
        """``scheme``, the one ``X-Forwarded-Proto`` tells when ``client`` (the peer's IP
        address) is a trusted proxy."""
        if self._trusted and self._trusted.trusts(client):
            forwarded = forwarded_scheme(headers.get("x-forwarded-proto"))
            if forwarded:
                return forwarded
        return scheme

    def client(self, request: Request) -> str:
        if not self._trusted:
            return request.client
        lines = request.headers.get_all("x-forwarded-for")  # a proxy may add its own line
        return forwarded_client(request.client, ", ".join(lines), self._trusted)
