"""The buyer's cases: every redirect shape of the seed's "Redirect URL" section played
against the buyer's redirect handler (``--match-url``), and pixel matching against its push
handler (``--push-url``). URLs are rendered by ``protocol.redirect`` from the buyer's URL as
an exchange would (macros in it are expanded)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from cookiematch.conformance import checks
from cookiematch.conformance.case import Case, Check, Request
from cookiematch.conformance.ids import CVER, KitIds
from cookiematch.protocol.codes import HostedMatchStatus, MatchError, UserListStatus
from cookiematch.protocol.query import QueryParam
from cookiematch.protocol.redirect import RedirectTemplate, ResponseParams

SEED_PIXEL = (
    "The buyer must then serve a 1x1 invisible image pixel to the user's browser, or return a "
    "204 No Content response."
)
SEED_ERROR = (
    "You should still respond with a 1x1 empty pixel if the google_error URL parameter is present."
)
SEED_OPT_OUT = "1 - User has a Google cookie, but has opted out of any tracking using this cookie."
SEED_EXTRAS = (
    "All parameters that do not start with the google_ prefix are copied over into the redirect "
    "URL. [...] the order in which extra parameters are passed in the redirect URL is not "
    "guaranteed."
)
SEED_EXTRA_SIZE = "Extra parameters should be no longer than one kilobyte."
SEED_ULA = "Status of user list add operation, repeated if multiple google_ula were specified"
SEED_HM = (
    "google_hm [...] Only appears if the attempt to write data to the hosted match table fails."
)
SEED_MACROS = "If the buyer needs the parameters in a specific order, they could provide [macros]"
SEED_PUSH = (
    "The <push_data> value passed in the redirect must be identical to the value provided by "
    "Google in the match tag. The buyer also has the option of adding parameters such as "
    "google_ula or google_hm."
)
EXTRAS = (QueryParam("p1", "v1"), QueryParam("p2", "v2"))
MACRO_QUERY = "w=0%%GOOGLE_PUSH_PAIR%%&x=1%%GOOGLE_GID_PAIR%%&y=2%%GOOGLE_CVER_PAIR%%&z=3%%GOOGLE_ERROR_PAIR%%"  # noqa: E501
OPAQUE_PUSH = "AbC+/x=="  # not URL-safe: the buyer must hand back what it decoded


@dataclass(frozen=True, slots=True)
class BuyerTarget:
    match_url: str
    push_url: str | None = None
    exchange_url: str | None = None
    nid: str | None = None  # the buyer's network ID at the exchange, checked on the way back
    limit_seconds: float = 0.5


def _with_query(url: str, query: str) -> str:
    parts = urlsplit(url)
    joiner = "&" if parts.query else "?"
    return f"{url}{joiner}{query}"


class BuyerCases:
    def __init__(self, target: BuyerTarget, ids: KitIds) -> None:
        self.target = target
        self.ids = ids
        self._common = (checks.NO_5XX, checks.quick(target.limit_seconds))

    def _url(
        self,
        base: str,
        response: ResponseParams,
        extras: tuple[QueryParam, ...] = (),
        *,
        extras_first: bool = True,
    ) -> str:
        scheme = urlsplit(base).scheme
        template = RedirectTemplate.compile(base)
        return template.render(scheme, response, extras, extras_first=extras_first)

    def _matched(
        self,
        *,
        user_lists: tuple[tuple[str, int], ...] = (),
        hosted_match: int | None = None,
        push: str | None = None,
    ) -> ResponseParams:
        """A successful match: a fresh gid, its cver, and the other response parameters."""
        return ResponseParams(self.ids.gid(), CVER, user_lists, hosted_match, push=push)

    def _case(
        self,
        name: str,
        seed: str,
        url: str,
        *extra: Check,
        required: bool = True,
        group: str = "match",
    ) -> Case:
        return Case(name, seed, Request("GET", url), (*self._common, *extra), required, group=group)

    def _returning(self, name: str, seed: str, url: str, *extra: Check) -> Case:
        """A browser that holds the buyer's cookie: the one a first match gave it."""
        primed = Request("GET", url, prime=self._url(self.target.match_url, self._matched()))
        return Case(name, seed, primed, (*self._common, *extra))

    def match_cases(self) -> list[Case]:
        base = self.target.match_url
        pixel_cookie = (checks.PIXEL, checks.SETS_COOKIE)
        cases = [
            self._case("gid and cver, new browser", SEED_PIXEL,
                       self._url(base, self._matched()), *pixel_cookie),
            self._case("extras before the google_ parameters", SEED_EXTRAS,
                       self._url(base, self._matched(), EXTRAS), *pixel_cookie),
            self._case("extras after the google_ parameters", SEED_EXTRAS,
                       self._url(base, self._matched(), EXTRAS, extras_first=False),
                       *pixel_cookie),
            self._case("extra parameter without value", SEED_EXTRAS,
                       self._url(base, self._matched(),
                                 (QueryParam("my_extra_param", ""), QueryParam("flag", None))),
                       checks.PIXEL),
            self._case("parameters placed by macros", SEED_MACROS,
                       self._url(_with_query(base, MACRO_QUERY), self._matched()),
                       *pixel_cookie),
            self._case("cookie usable in the exchange's cross-site redirect", SEED_PIXEL,
                       self._url(base, self._matched()), checks.THIRD_PARTY_COOKIE,
                       required=False),
            self._case("google_error=1 opts out", SEED_OPT_OUT,
                       self._url(base, ResponseParams(error=MatchError.OPTED_OUT)),
                       checks.PIXEL, checks.NO_NEW_COOKIE),
            self._returning("returning browser: google_error=1 opts out", SEED_OPT_OUT,
                            self._url(base, ResponseParams(error=MatchError.OPTED_OUT)),
                            checks.PIXEL, checks.NO_NEW_COOKIE),
            self._returning("returning browser: gid and cver", SEED_PIXEL,
                            self._url(base, self._matched()), checks.PIXEL),
            self._case("extras of one kilobyte", SEED_EXTRA_SIZE,
                       self._url(base, self._matched(), (QueryParam("kb", "x" * 1000),)),
                       checks.PIXEL),
        ]  # fmt: skip
        cases += [
            self._case(f"google_error={code.value} ({code.name.lower()})", SEED_ERROR,
                       self._url(base, ResponseParams(error=code), EXTRAS), checks.PIXEL)
            for code in MatchError
            if code is not MatchError.OPTED_OUT
        ]  # fmt: skip
        cases += [
            self._case(f"google_ula status {status.value} ({status.name.lower()})", SEED_ULA,
                       self._url(base, self._matched(user_lists=(("12345", status),))),
                       checks.PIXEL)
            for status in UserListStatus
        ]  # fmt: skip
        cases.append(
            self._case("google_ula repeated", SEED_ULA,
                       self._url(base, ResponseParams(user_lists=(("12345", 2), ("45678", 0)))),
                       checks.PIXEL)
        )  # fmt: skip
        cases += [
            self._case(f"google_hm status {status.value} ({status.name.lower()})", SEED_HM,
                       self._url(base, self._matched(hosted_match=status)), checks.PIXEL)
            for status in HostedMatchStatus
        ]  # fmt: skip
        cases += [
            self._case(name, "Your servers must recognize the redirect URL, and serve a 1x1 "
                       "empty pixel to the user's browser", _with_query(base, query),
                       checks.PIXEL)
            for name, query in (
                ("malformed google_gid", "google_gid=%21%21%21&google_cver=1"),
                ("google_cver not a number", f"google_gid={self.ids.gid()}&google_cver=x"),
                ("bad percent-encoding", "google_gid=%zz&google_cver=1"),
            )
        ]  # fmt: skip
        return cases

    def push_cases(self) -> list[Case]:
        base = self.target.push_url
        if base is None:
            return []
        cases = []
        for name, push, extras, first in (
            ("push: gid, cver and google_push", self.ids.push(), (), True),
            ("push: extras before", self.ids.push(), EXTRAS, True),
            ("push: extras after", self.ids.push(), EXTRAS, False),
            ("push: opaque push data with '+', '/' and '='", OPAQUE_PUSH, (), True),
        ):
            back = checks.push_back(self.target.exchange_url, push, self.target.nid)
            url = self._url(base, self._matched(push=push), extras, extras_first=first)
            cases.append(self._case(name, SEED_PUSH, url, back, checks.SETS_COOKIE, group="push"))
        return cases

    def all(self) -> list[Case]:
        return self.match_cases() + self.push_cases()
