"""Every example URL of the Cookie Matching document, end to end through the protocol layer:
match tag URL -> parse_query -> parse_match_tag -> (decided ResponseParams) -> render."""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest

from cookiematch.errors import HostedMatchError
from cookiematch.protocol.hosted import decode_hosted_match
from cookiematch.protocol.matchtag import MatchTagRequest, parse_match_tag
from cookiematch.protocol.query import QueryParam, parse_query
from cookiematch.protocol.redirect import RedirectTemplate, ResponseParams

from .goldens import cases, load


def parse_tag(url: str) -> tuple[str, MatchTagRequest]:
    scheme, _, rest = url.partition("://")
    _, _, query = rest.partition("?")
    return scheme, parse_match_tag(parse_query(query))


def check_tag(tag: MatchTagRequest, expected: dict[str, Any]) -> None:
    for key, value in expected.items():
        if key == "extras":
            assert [[p.name, p.value] for p in tag.extras] == value
        elif key == "ula":
            assert [[u.raw_id, u.list_id, u.timestamp] for u in tag.user_list_adds] == value
        elif key == "hosted_match_data":
            assert tag.hosted_match is not None
            assert decode_hosted_match(tag.hosted_match) == value.encode()
        else:
            assert getattr(tag, key) == value, key


def decide(tag: MatchTagRequest | None, response: dict[str, Any]) -> ResponseParams:
    """The test plays the exchange: it supplies the decided values of the vector."""
    if "error" in response:
        return ResponseParams(error=response["error"])
    statuses = response.get("ula_statuses", [])
    hosted_status = None
    if tag is not None:
        assert len(statuses) == len(tag.user_list_adds)
        assert ("gid" in response) == tag.cookie_match
        if tag.hosted_match is not None:
            try:
                decode_hosted_match(tag.hosted_match)
            except HostedMatchError as exc:
                hosted_status = exc.status
    user_lists = tuple(
        (add.raw_id, status)
        for add, status in zip(tag.user_list_adds if tag else (), statuses, strict=tag is not None)
    )
    return ResponseParams(
        gid=response.get("gid"),
        cver=response.get("cver"),
        user_lists=user_lists,
        hosted_match=hosted_status,
        push=response.get("push"),
    )


def split(url: str) -> tuple[str, Counter[tuple[str, str | None]]]:
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return base, Counter((p.name, p.value) for p in parse_query(parts.query))


@pytest.mark.parametrize("case", cases("redirects.json"))
def test_seed_example(case: dict[str, Any]) -> None:
    tag = None
    extras: tuple[QueryParam, ...] = ()
    scheme = case.get("scheme")
    if case["match_tag"] is not None:
        scheme, tag = parse_tag(case["match_tag"])
        check_tag(tag, case.get("expected_tag", {}))
        extras = tag.extras
    assert scheme is not None
    template = RedirectTemplate.compile(case["redirect_url"])
    response = decide(tag, case["response"])
    url = template.render(scheme, response, extras)
    if case["compare"] == "exact":
        assert url == case["expected"]
    else:
        assert split(url) == split(case["expected"])
    if "exact_with_extras_first" in case:
        flipped = template.render(
            scheme, response, extras, extras_first=case["exact_with_extras_first"]
        )
        assert flipped == case["expected"]


def test_every_seed_redirect_url_is_covered() -> None:
    """Every redirect URL printed in the seed appears among the vectors (as is, or as_printed)."""
    printed = {
        "http://ad.network.com/pixel?google_gid=dGhpcyBpcyBhbiBleGFtGxl&google_cver=1",
        "http://ad.network.com/pixel?google_gid=dGhpcyBpcyBhbiBleGFtGxl&google_cver=1&extra1=xx&extra2=yy",
        "http://ad.network.com/pixel?id=&google_gid=dGhpcyBpcyBhbiBleGFtGxl&google_cver=1",
        "http://ad.network.com/pixel?id=&google_error=3",
        "http://ad.network.com/pixel?id=&p1=v1&p2=v2&google_gid=dGhpcyBpcyBhbiBleGFtGxl&google_cver=1",
        "http://ad.network.com/pixel?id=&p2=v2&google_gid=dGhpcyBpcyBhbiBleGFtGxl&google_cver=1",
        "http://ad.network.com/pixel?id=&google_ula=12345,0",
        "http://ad.network.com/pixel?id=&google_ula=12345,2",
        "http://ad.network.com/pixel?id=&google_ula=12345,2&google_ula=45678,0",
        "http://ad.network.com/pixel?id=&google_gid=dGhpcyBpcyBhbiBleGFtGxl&google_cver=1&google_ula=12345,0",
        "http://cookie-monster.com/pixel?id=",
        "http://cookie-monster.com/pixel?id=&google_hm=2",
        "http://cookie-monster.com/pixel?id=&my_extra_parameter=&my_other_extra_param=7&google_gid=ABCDETC&google_cver=1&google_ula=12345,0",
        "http://user.buyer.com/cookies?w=0&google_push=456&x=1&google_gid=1&y=2&google_cver=1&z=3",
        "http://user.buyer/cookies?x=0&y=1&google_push=456&google_gid=1&google_cver=1",
        "http://ad.network.com/pixel?google_gid=abcdef&google_cver=1&google_push=<push_data>",
    }
    covered = set()
    for case in load("redirects.json")["cases"]:
        covered.add(case["expected"])
        if "as_printed" in case:
            covered.add(case["as_printed"])
    assert printed <= covered
