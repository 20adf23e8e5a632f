"""The exchange's cases: every match tag of the seed's examples (the golden vectors in
``vectors/redirects.json``) sent to the exchange's Cookie Matching endpoint (``--url``), the
302 compared with the vector's expected redirect. The Google User ID an exchange mints is its
own: any well-formed value stands for the vector's, as does any numeric ``google_cver``.

The exchange must know the seed's buyers (``SEED_BUYERS``) and user list (``SEED_LIST``).
A vector whose outcome needs a state that contradicts that setup runs when the operator gives
the kit the state that stands for it (``Setup``: an opted-out browser's cookie, a buyer with
the extended redirect URL, a list the buyer may not add to, a list of the hosted-match
buyer); without it, the case is reported as not run, naming the option.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from cookiematch.conformance.case import Answer, Case, Check, Request, Verdict
from cookiematch.conformance.runner import cookie_pairs, send
from cookiematch.conformance.vectors import load
from cookiematch.errors import QueryError
from cookiematch.protocol.query import parse_query

SEED_BUYERS = {
    "1234": "http://ad.network.com/pixel",
    "ad_network_xyz": "http://ad.network.com/pixel?id=",
    "cookie-monster": "http://cookie-monster.com/pixel?id=",  # hosted match allowed
}
SEED_LIST = (12345, "ad_network_xyz")  # user list id, its owner
SECOND_LIST = 45678  # the other list of the seed's "multiple lists" example
EXTENDED_URL = "http://ad.network.com/pixel?id=&p1=v1&p2=v2"  # a configured URL with extras
COOKIE_TAG = "google_nid=ad_network_xyz&google_cm&google_sc"
MATCH_TAG = "google_nid=ad_network_xyz&google_cm"
_GID = re.compile(r"[A-Za-z0-9_-]+")
_CVER = re.compile(r"[0-9]+")


def _normalized(url: str) -> tuple[str, list[tuple[str, str | None]]] | str:
    """Base and parameters, with the gid and cver values replaced by placeholders, or why the
    URL is not a conforming redirect."""
    parts = urlsplit(url)
    try:
        params = parse_query(parts.query)
    except QueryError as exc:
        return f"the redirect's query does not parse ({exc})"
    out: list[tuple[str, str | None]] = []
    for p in params:
        if p.name == "google_gid":
            if p.value is None or _GID.fullmatch(p.value) is None:
                return f"google_gid={p.value!r} is not unpadded URL-safe base64"
            out.append((p.name, "<gid>"))
        elif p.name == "google_cver":
            if p.value is None or _CVER.fullmatch(p.value) is None:
                return f"google_cver={p.value!r} is not a number"
            out.append((p.name, "<cver>"))
        else:
            out.append((p.name, p.value))
    return f"{parts.scheme}://{parts.netloc}{parts.path}", out


def redirects_to(expected: str, *, any_order: bool) -> Check:
    want = _normalized(expected)
    assert not isinstance(want, str), want

    def judge(answer: Answer) -> Verdict:
        location = answer.header("location")
        if answer.status != 302 or location is None:
            return f"answered {answer.status}: the match tag gets a 302 to {expected}"
        got = _normalized(location)
        if isinstance(got, str):
            return got
        same = (
            got[0] == want[0] and Counter(got[1]) == Counter(want[1]) if any_order else got == want
        )
        if not same:
            return f"redirected to {location}, expected {expected} (gid and cver: any value)"
        return None

    return Check("the seed's redirect", judge)


@dataclass(frozen=True, slots=True)
class Setup:
    """What the operator gives the kit for the vectors that contradict the seed's setup
    (None: the vectors that need it are not run).

    ``optout_cookie``: the Cookie header of a browser that opted out at the exchange;
    ``extended_nid``: a buyer configured with ``EXTENDED_URL``, standing for
    ``ad_network_xyz`` in the examples of a configured URL with extra parameters;
    ``denied_list``: a user list ``ad_network_xyz`` may not add to (another buyer's), standing
    for 12345 where the example refuses it (list 12345 then stands for 45678);
    ``hosted_list``: a user list of ``cookie-monster``, standing for 12345 in the example that
    adds cookie-monster's browser to it."""

    optout_cookie: str | None = None
    extended_nid: str | None = None
    denied_list: int | None = None
    hosted_list: int | None = None


@dataclass(frozen=True, slots=True)
class _Play:
    """A vector as played: its query, the redirect expected, the Cookie header to send
    (None: the prepared browser's), or why it cannot be played."""

    query: str
    expected: str
    cookie: str | None = None
    not_run: str | None = None


def _lists(text: str, ids: dict[int, int]) -> str:
    """``text`` (a query) with each ``google_ula`` list ID in ``ids`` replaced."""

    def one(param: str) -> str:
        name, _, value = param.partition("=")
        list_id, comma, rest = value.partition(",")
        if name != "google_ula" or not list_id.isdigit() or int(list_id) not in ids:
            return param
        return f"{name}={ids[int(list_id)]}{comma}{rest}"

    base, mark, query = text.partition("?")
    if not mark:
        return "&".join(one(p) for p in text.split("&"))
    return base + mark + "&".join(one(p) for p in query.split("&"))


def _play(vector: dict[str, Any], nid: str, query: str, expected: str, setup: Setup) -> _Play:
    """How ``vector`` is played under ``setup``."""
    response = vector["response"]
    statuses = response.get("ula_statuses", [])
    if response.get("error") == 1:
        if setup.optout_cookie is None:
            why = "needs a browser that opted out at the exchange (--optout-cookie)"
            return _Play(query, expected, not_run=why)
        return _Play(query, expected, cookie=setup.optout_cookie)
    if SEED_BUYERS.get(nid) != vector["redirect_url"]:
        if vector["redirect_url"] != EXTENDED_URL or setup.extended_nid is None:
            why = f"needs {nid} configured with the redirect URL {vector['redirect_url']}"
            return _Play(query, expected, not_run=f"{why} (--extended-nid)")
        query = query.replace(f"google_nid={nid}", f"google_nid={setup.extended_nid}")
        return _Play(query, expected)
    if any(statuses):
        if setup.denied_list is None:
            why = (
                "needs a user list the buyer may not add to (the vectors use list 12345 both ways)"
            )
            return _Play(query, expected, not_run=f"{why} (--denied-list)")
        ids = {SEED_LIST[0]: setup.denied_list, SECOND_LIST: SEED_LIST[0]}
        return _Play(_lists(query, ids), _lists(expected, ids))
    if statuses and nid != SEED_LIST[1]:
        if setup.hosted_list is None:
            why = f"needs list {SEED_LIST[0]} owned by {nid} (the setup gives it to {SEED_LIST[1]})"
            return _Play(query, expected, not_run=f"{why} (--hosted-list)")
        ids = {SEED_LIST[0]: setup.hosted_list}
        return _Play(_lists(query, ids), _lists(expected, ids))
    return _Play(query, expected)


def _tag_query(match_tag: str) -> tuple[str, str]:
    """The tag's nid and its query without ``google_tc`` (the exchange's own cookie hop)."""
    query = urlsplit(match_tag).query
    kept = [p for p in query.split("&") if p.partition("=")[0] != "google_tc"]
    nid = next(p.partition("=")[2] for p in kept if p.startswith("google_nid="))
    return nid, "&".join(kept)


SEED_ERRORS = (
    ("google_error=2: no operation", "google_nid=ad_network_xyz",
     "2 - No valid operations specified. e.g., a no-op request was received.", 2),
    ("google_error=4: google_push with google_cm",
     "google_nid=ad_network_xyz&google_cm&google_push=x",
     "4 - Conflicting operations specified. You are not allowed to specify both the google_push "
     "and google_cm flags on the same request", 4),
    ("google_error=5: google_push not the one sent", "google_nid=ad_network_xyz&google_push=x",
     "5 - An invalid google_push parameter was passed in a redirect to a Google server", 5),
)  # fmt: skip
"""The error codes of the seed's table that no example shows: a browser with a cookie."""


def _error_cases(url: str, cookie: str | None) -> list[Case]:
    base = _with_scheme(SEED_BUYERS["ad_network_xyz"], urlsplit(url).scheme)
    headers = () if cookie is None else (("Cookie", cookie),)
    not_run = None if cookie is not None else "the exchange set no cookie on a google_sc match tag"
    return [
        Case(name, f"Redirect URL: {seed}", Request("GET", f"{url}?{query}", headers),
             (redirects_to(f"{base}&google_error={code}", any_order=False),), not_run=not_run,
             group="exchange")
        for name, query, seed, code in SEED_ERRORS
    ]  # fmt: skip


def _with_scheme(expected: str, scheme: str) -> str:
    """A redirect's scheme follows the match tag's, here the ``--url``'s."""
    return scheme + expected[expected.index("://") :]


def exchange_cases(url: str, browser: Browser, setup: Setup | None = None) -> list[Case]:
    """A case per match-tag vector, the seed's other error codes and the gid's properties;
    ``browser``: one that has the exchange's cookie (``prepare``); ``setup``: what stands for
    the states that contradict the seed's setup."""
    setup = setup or Setup()
    scheme = urlsplit(url).scheme
    cases = []
    for vector in load("redirects.json")["cases"]:
        if vector["match_tag"] is None:
            continue  # a buyer-side template vector: nothing to send
        nid, query = _tag_query(vector["match_tag"])
        played = _play(vector, nid, query, _with_scheme(vector["expected"], scheme), setup)
        query, expected, not_run = played.query, played.expected, played.not_run
        cookie = played.cookie or browser.cookie
        without_cookie = vector["response"].get("error") == 3
        headers: tuple[tuple[str, str], ...] = ()
        if not without_cookie and cookie is not None:
            headers = (("Cookie", cookie),)
        if not without_cookie and cookie is None and not_run is None:
            not_run = "the exchange set no cookie on a google_sc match tag"
        cases.append(
            Case(
                vector["name"],
                f"{vector['section']}: {vector['match_tag']}",
                Request("GET", f"{url}?{query}", headers, follow_same_origin=without_cookie,
                        return_cookies="google_tc" not in vector["match_tag"]),
                (redirects_to(expected, any_order=vector["compare"] != "exact"),),
                not_run=not_run,
                group="exchange",
            )
        )  # fmt: skip
    return cases + _error_cases(url, cookie) + gid_cases(url, browser)


@dataclass(frozen=True, slots=True)
class Browser:
    """A browser the exchange gave its cookie to (``cookie``: the Cookie header, None when the
    exchange set none) and the gid ``ad_network_xyz`` got for it then."""

    cookie: str | None
    gid: str | None


def _gid_of(answer: Answer) -> str | None:
    try:
        params = parse_query(urlsplit(answer.header("location") or "").query)
    except QueryError:
        return None
    return next((p.value for p in params if p.name == "google_gid"), None)


async def prepare(client: httpx.AsyncClient, url: str) -> Browser:
    """Get the exchange's cookie (``google_sc``), then match once for ``ad_network_xyz``."""
    first = await send(client, Request("GET", f"{url}?{COOKIE_TAG}"))
    pairs = cookie_pairs(first.all("set-cookie"))
    if not pairs:
        return Browser(None, None)
    cookie = "; ".join(f"{k}={v}" for k, v in pairs.items())
    answer = await send(client, Request("GET", f"{url}?{MATCH_TAG}", (("Cookie", cookie),)))
    return Browser(cookie, _gid_of(answer))


def _gid_check(what: str, wrong: Callable[[str], str | None]) -> Check:
    """``wrong(gid)``: what is wrong with the redirect's gid, or None."""

    def judge(answer: Answer) -> Verdict:
        gid = _gid_of(answer)
        if gid is None:
            return f"no google_gid in the redirect ({answer.header('location')!r})"
        return wrong(gid)

    return Check(what, judge)


def gid_cases(url: str, browser: Browser) -> list[Case]:
    """The gid is stable for a browser and a buyer, differs between buyers, and is not the
    exchange's cookie."""
    first, why = browser.gid, None
    headers: tuple[tuple[str, str], ...] = ()
    if browser.cookie is None or first is None:
        why = "the exchange set no cookie, or matched no gid for it"
    else:
        headers = (("Cookie", browser.cookie),)
    cookie_values = {p.partition("=")[2] for p in (browser.cookie or "").split("; ")}

    def changed(gid: str) -> str | None:
        if gid == first:
            return None
        return (
            f"google_gid={gid} changed since the first match ({first}): buyers store the "
            "exact string, a browser's gid must stay the same"
        )

    def shared(gid: str) -> str | None:
        if gid != first:
            return None
        return f"buyer 1234 got ad_network_xyz's google_gid ({gid}): derive the gid per buyer"

    def exposed(gid: str) -> str | None:
        if gid not in cookie_values:
            return None
        return f"google_gid={gid} is the exchange's cookie value: encrypt it per buyer"

    return [
        Case("same browser, same buyer: the same gid",
             "We recommend storing the exact string returned by the Cookie Matching Service in "
             "the match table.", Request("GET", f"{url}?{MATCH_TAG}", headers),
             (_gid_check("the gid of the first match", changed),), not_run=why,
             group="exchange"),
        Case("another buyer: another gid",
             "a buyer-specific encrypted Google User ID [...] Google prohibits multiple buyers "
             "from joining their Match Tables.",
             Request("GET", f"{url}?google_nid=1234&google_cm", headers),
             (_gid_check("a gid of its own", shared),), not_run=why, group="exchange"),
        Case("the gid is not the exchange's cookie",
             "The Cookie Matching Service does not expose Google's DoubleClick cookie.",
             Request("GET", f"{url}?{MATCH_TAG}", headers),
             (_gid_check("not the cookie's value", exposed),), not_run=why, group="exchange"),
    ]  # fmt: skip
