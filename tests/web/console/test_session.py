"""The console's signed session: read back until it expires, never under another admin token,
never when altered; the cookie never holds the token."""

from __future__ import annotations

from cookiematch.web.admin import Principal
from cookiematch.web.console.session import COOKIE_NAME, Sessions

TOKEN = "test-admin-token-0123456789"


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_expires() -> None:
    clock = Clock()
    sessions = Sessions(TOKEN, lifetime_seconds=300, clock=clock)
    value, issued = sessions.issue(Principal("dsp", frozenset({"user_lists"}), "c1"))
    assert TOKEN not in value
    header = f"other=1; {COOKIE_NAME}={value}"
    found = sessions.read(header)
    assert found is not None and found.principal == issued.principal
    assert found.csrf == issued.csrf and len(found.csrf) >= 20
    clock.now += 299
    assert sessions.read(header) is not None
    clock.now += 1
    assert sessions.read(header) is None


def test_another_admin_token_or_an_altered_value_reads_nothing() -> None:
    clock = Clock()
    value, _ = Sessions(TOKEN, lifetime_seconds=300, clock=clock).issue(Principal())
    other = Sessions(TOKEN + "x", lifetime_seconds=300, clock=clock)
    assert other.read(f"{COOKIE_NAME}={value}") is None
    same = Sessions(TOKEN, lifetime_seconds=300, clock=clock)
    payload, mac = value.split(".")
    for altered in (f"{payload}x.{mac}", f"{payload}.{mac}x", f"{payload}", "", "%%%.%%%"):
        assert same.read(f"{COOKIE_NAME}={altered}") is None
    assert same.read(f"{COOKIE_NAME}={value}") is not None
