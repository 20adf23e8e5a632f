"""Every configured URL is read by the one parser (protocol/url.py): the keys agree.

The URLs below are those on which the checks of each key used to disagree (user info in a
bidder URL, a control character in a pull URL, a query without a path, ...).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cookiematch.config import parse_buyer
from cookiematch.config.buyer import BuyerRoleConfig
from cookiematch.config.dmp import DmpClientConfig, DmpConfig, DmpPartnerConfig, DmpTagConfig
from cookiematch.config.dmp_segments import DmpDestinationConfig
from cookiematch.config.values import Problems, Secret
from cookiematch.errors import RedirectURLError, ValidationFailed
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.protocol.templates import SyncTemplate


def _bidder(url: str) -> Problems:
    try:
        parse_buyer({"nid": "dsp", "redirect_url": "http://dsp.example/m", "bidder_url": url})
    except ValidationFailed as exc:
        return [(e["field"], e["message"]) for e in exc.errors]
    return []


def _pull(url: str) -> Problems:
    partner = DmpPartnerConfig(id="p", sync_url="https://p.example/${DMP_UID}", pull_url=url)
    return partner.problems(DmpConfig().settings())


def _destination(url: str) -> Problems:
    destination = DmpDestinationConfig(id="d", url=url, secret=Secret("0123456789abcdef"))
    return destination.problems(set())


def _template(compile_url: Callable[[str], object]) -> Callable[[str], Problems]:
    def problems(url: str) -> Problems:
        try:
            compile_url(url)
        except RedirectURLError as exc:
            return [("url", str(exc))]
        return []

    return problems


CHECKS: dict[str, Callable[[str], Problems]] = {
    "exchange.buyers[].redirect_url": _template(RedirectTemplate.compile),
    "exchange.buyers[].bidder_url": _bidder,
    "buyer.exchange_url": lambda url: BuyerRoleConfig(nid="dsp", exchange_url=url).problems(),
    "dmp.partners[].sync_url": _template(SyncTemplate.compile),
    "dmp.partners[].pull_url": _pull,
    "dmp.clients[].tags[].url": lambda url: DmpTagConfig(id="t", url=url).problems(),
    "dmp.destinations[].url": _destination,
}

ACCEPTED = [
    "http://127.0.0.1:8710/bid",
    "https://a.example/p?x=1&y=%20",
    "HTTPS://a.example/p",
    "http://[::1]:8080/p",
    "http://cm_sync.buyer.example/p",
    "http://localhost./p",
    "http://a.example/" + "x" * 2031,  # 2048 characters
]

REFUSED = [
    "http://user:pw@a.example/p",  # the bidder URL pattern allowed user info
    "http://a.example/p\x00",  # the pull and destination URL pattern allowed controls
    "http://a.example/é",  # ... and non-ASCII
    "http://bücher.example/p",
    "http://a.example/p?x=%zz",  # only the templates checked percent-encoding
    "http://a.example/p?a[]=1",  # everyone allowed brackets outside the host
    "http://a.example?x=1",  # only the pull and destination URL pattern wanted a path
    "http://a.example:0/p",  # ports were 1-5 digits, or not checked
    "http://a.example:99999/p",
    "http://-a.example/p",
    "http://999.1.1.1/p",
    "http://[::g]/p",
    "http://a.example/p#f",
    "ftp://a.example/p",
    " http://a.example/p",
    "http://a.example/" + "x" * 2032,  # 2049 characters: the bidder pattern allowed https ones
]


@pytest.mark.parametrize("key", CHECKS)
@pytest.mark.parametrize("url", ACCEPTED)
def test_every_key_accepts(key: str, url: str) -> None:
    assert CHECKS[key](url) == []


@pytest.mark.parametrize("key", CHECKS)
@pytest.mark.parametrize("url", REFUSED)
def test_every_key_refuses(key: str, url: str) -> None:
    problems = CHECKS[key](url)
    assert len(problems) == 1 and "URL " in problems[0][1], problems


@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        ("http://shop.localhost:8000", True),
        ("https://[::1]:8443", True),
        ("https://shop.example/", False),
        ("https://shop_example:0", False),
        ("shop.example", False),
    ],
)
def test_origins_agree(origin: str, ok: bool) -> None:
    """``dmp.public_url`` (a trailing slash removed) and ``dmp.clients[].allowed_origins``."""
    public = DmpConfig(public_url=origin).problems()
    allowed = DmpClientConfig(id="c", allowed_origins=(origin,)).problems(set())
    assert (public == [], allowed == []) == (ok or origin.endswith("/"), ok)


def test_a_public_url_takes_no_query() -> None:
    assert BuyerRoleConfig(nid="d", exchange_url="https://e/p?x=1").problems() == []
    buyer = BuyerRoleConfig(
        nid="d", exchange_url="https://e/p", public_url="https://b/?x", admin_token=Secret("t" * 16)
    )
    assert buyer.problems() == [("public_url", "URL must not contain a query")]
