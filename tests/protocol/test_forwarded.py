"""X-Forwarded-* believed from trusted proxies only, read from the right."""

from __future__ import annotations

import pytest

from cookiematch.protocol.forwarded import TrustedProxies, forwarded_client, forwarded_scheme

PROXIES = TrustedProxies(["10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # not a proxy: its header is ignored
        ("10.0.0.2", None, "10.0.0.2"),  # a proxy that says nothing
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "1.2.3.4, 198.51.100.1", "198.51.100.1"),  # the left one is the browser's word
        ("10.0.0.2", "198.51.100.1, 10.0.0.7", "198.51.100.1"),  # past every trusted hop
        ("::1", "2001:db8::5", "2001:db8::5"),
        ("10.0.0.2", "10.0.0.9, 10.0.0.7", "10.0.0.9"),  # only proxies: the farthest one
        ("10.0.0.2", "junk, 198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "198.51.100.1, junk", "10.0.0.2"),  # a malformed hop stops the walk
        ("10.0.0.2", "", "10.0.0.2"),
    ],
)
def test_forwarded_client(peer: str, header: str | None, expected: str) -> None:
    assert forwarded_client(peer, header, PROXIES) == expected


def test_nobody_is_trusted_by_default() -> None:
    assert forwarded_client("10.0.0.2", "198.51.100.1", TrustedProxies()) == "10.0.0.2"


@pytest.mark.parametrize(
    ("header", "expected"),
    [("https", "https"), ("HTTP, https", "http"), ("ftp", None), ("", None), (None, None)],
)
def test_forwarded_scheme(header: str | None, expected: str | None) -> None:
    assert forwarded_scheme(header) == expected
