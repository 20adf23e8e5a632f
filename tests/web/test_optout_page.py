"""The shared opt-out page: only a POST made from the page itself acts (CSRF)."""

from __future__ import annotations

import re

import pytest

from cookiematch.privacy.subjects import StoredRecord
from cookiematch.web.http import Headers, Request, Response
from cookiematch.web.optout_page import OPT_OUT, UNDO, OptOutPage

PAGE = OptOutPage("Example Exchange", secure=False)


def token_of(response: Response) -> str:
    cookie = next(v for k, v in response.headers if k == "Set-Cookie" and "csrf" in v)
    value = cookie.split(";")[0].split("=", 1)[1]
    assert f'value="{value}"' in response.body.decode()
    return value


def post(body: str, cookie: str | None, **headers: str) -> Request:
    pairs = [(k.replace("_", "-"), v) for k, v in headers.items()]
    if cookie is not None:
        pairs.append(("cookie", cookie))
    return Request("POST", "/optout", "", Headers(pairs), "https", "192.0.2.1", body.encode())


def test_page_lists_records_and_sets_a_strict_token_cookie() -> None:
    record = StoredRecord(kind="hosted_match", key="hm:x", value="v", expires_in_seconds=86400 * 3)
    response = PAGE.show(opted_out=False, records=[record])
    body = response.body.decode()
    assert "hosted_match" in body and "3 more days" in body
    assert 'value="optout"' in body
    cookie = next(v for k, v in response.headers if k == "Set-Cookie")
    assert "SameSite=Strict" in cookie and "HttpOnly" in cookie and "Path=/optout" in cookie
    assert response.header("X-Frame-Options") == "DENY"
    assert "frame-ancestors 'none'" in (response.header("Content-Security-Policy") or "")


def test_opted_out_page_offers_undo_and_escapes_the_operator() -> None:
    body = OptOutPage("<b>x</b>").show(opted_out=True).body.decode()
    assert 'value="undo"' in body and "<b>x</b>" not in body and "&lt;b&gt;" in body
    assert "Nothing is stored" in body


@pytest.mark.parametrize("action", [OPT_OUT, UNDO])
def test_a_post_from_the_page_is_accepted(action: str) -> None:
    token = token_of(PAGE.show(opted_out=False))
    request = post(
        f"csrf={token}&action={action}",
        f"cm_optout_csrf={token}",
        sec_fetch_site="same-origin",
        origin="https://exchange.example",
        host="exchange.example",
    )
    assert PAGE.submitted(request) == action


@pytest.mark.parametrize(
    ("body", "cookie", "headers"),
    [
        ("csrf={t}&action=undo", None, {}),  # a cross-site POST: the Strict cookie is not sent
        ("csrf={t}&action=undo", "cm_optout_csrf=other", {}),
        ("action=undo", "cm_optout_csrf={t}", {}),
        ("csrf=&action=undo", "cm_optout_csrf=", {}),
        ("csrf={t}&action=undo", "cm_optout_csrf={t}", {"sec_fetch_site": "cross-site"}),
        ("csrf={t}&action=undo", "cm_optout_csrf={t}", {"sec_fetch_site": "same-site"}),
        (
            "csrf={t}&action=undo",
            "cm_optout_csrf={t}",
            {"origin": "https://evil.example", "host": "exchange.example"},
        ),
        ("csrf={t}&action=delete", "cm_optout_csrf={t}", {}),
        ("csrf={t}&action=%zz", "cm_optout_csrf={t}", {}),
    ],
)
def test_anything_else_is_refused(body: str, cookie: str | None, headers: dict[str, str]) -> None:
    token = token_of(PAGE.show(opted_out=True))
    request = post(
        body.format(t=token), None if cookie is None else cookie.format(t=token), **headers
    )
    assert PAGE.submitted(request) is None
    assert PAGE.refuse().status == 403


def test_each_page_has_its_own_token() -> None:
    tokens = {token_of(PAGE.show(opted_out=False)) for _ in range(20)}
    assert len(tokens) == 20 and all(re.fullmatch(r"[A-Za-z0-9_-]{22}", t) for t in tokens)
