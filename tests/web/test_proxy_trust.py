"""The browser as the first trusted proxy saw it (``web/forwarded.py``)."""

from __future__ import annotations

from cookiematch.web.forwarded import ProxyTrust
from cookiematch.web.http import Headers, Request


def request(*headers: tuple[str, str], peer: str = "10.0.0.2") -> Request:
    return Request("GET", "/ad", "", Headers(list(headers)), "http", peer)


def test_every_x_forwarded_for_line_is_read() -> None:
    """A proxy that adds its own line (HAProxy's ``option forwardfor``) must not let the
    browser's own first line through."""
    lines = request(("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.5"))
    assert ProxyTrust(["10.0.0.0/8"]).client(lines) == "203.0.113.5"


def test_scheme_and_client_from_trusted_proxies_only() -> None:
    forwarded = (("x-forwarded-for", "203.0.113.5"), ("x-forwarded-proto", "https"))
    trusted = ProxyTrust(["10.0.0.0/8"])
    assert trusted.client(request(*forwarded)) == "203.0.113.5"
    assert trusted.scheme(request(*forwarded)) == "https"
    stranger = request(*forwarded, peer="198.51.100.9")
    assert trusted.client(stranger) == "198.51.100.9" and trusted.scheme(stranger) == "http"
    nobody = ProxyTrust()
    assert nobody.client(request(*forwarded)) == "10.0.0.2"
    assert nobody.scheme(request(*forwarded)) == "http"
