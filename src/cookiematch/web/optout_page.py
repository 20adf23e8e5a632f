"""A role's own opt-out page, the same in every role: ``GET`` shows whether this browser is
opted out, what is stored about it and for how long, and the buttons; the buttons ``POST``
back, and only a ``POST`` made from this page acts.

A genuine ``POST`` carries the page's token twice (CSRF, "double submit", ``web/csrf.py``):
in a hidden form field and in a ``SameSite=Strict`` cookie that the page set. A browser sends
a Strict cookie only on requests its own site started, so a third-party page that posts the
form (or opens it in a frame, which the page forbids) has no cookie to match.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from cookiematch.errors import QueryError
from cookiematch.privacy.subjects import StoredRecord
from cookiematch.protocol.cookies import CookieSpec, parse_cookie_header
from cookiematch.protocol.query import parse_query
from cookiematch.web.csrf import new_token, same_site, tokens_match
from cookiematch.web.http import Request, Response

__all__ = ["OPT_OUT", "PAGE_HEADERS", "UNDO", "OptOutPage"]

OPT_OUT = "optout"
UNDO = "undo"
_ACTIONS = frozenset({OPT_OUT, UNDO})
CSRF_FIELD = "csrf"
PAGE_HEADERS = (
    ("X-Frame-Options", "DENY"),
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    ),
    # not "no-referrer": under it a browser sends the form's POST with "Origin: null", which
    # the Origin check refuses; "same-origin" keeps the page's own origin on its POST only
    ("Referrer-Policy", "same-origin"),
)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "until erased"
    days = seconds / 86400
    if days >= 1:
        return f"{days:.0f} more day{'s' if round(days) != 1 else ''}"
    hours = seconds / 3600
    return f"{max(hours, 0.1):.1f} more hours"


@dataclass(frozen=True, slots=True)
class OptOutPage:
    """The page of one role: ``operator`` names it to people, ``path`` is where it is served,
    ``secure`` marks its token cookie ``Secure`` (as the role's own cookie is)."""

    operator: str
    path: str = "/optout"
    secure: bool = True

    @property
    def _token_cookie(self) -> CookieSpec:
        return CookieSpec(
            name="cm_optout_csrf",
            max_age=3600,
            secure=self.secure,
            http_only=True,
            same_site="Strict",
            path=self.path,
        )

    def show(
        self,
        *,
        opted_out: bool,
        records: Sequence[StoredRecord] | None = (),
        message: str | None = None,
        set_cookies: Sequence[str] = (),
        status: int = 200,
    ) -> Response:
        """The page, with a fresh token (in its form and its Strict cookie); ``records=None``
        when what is stored could not be read (the page then says nothing about it)."""
        token = new_token()
        name = html.escape(self.operator)
        state = (
            "This browser is opted out: it is not matched, and nothing is stored about it."
            if opted_out
            else "This browser is not opted out."
        )
        rows = "".join(
            f"<tr><td>{html.escape(r.kind)}</td><td>{html.escape(_duration(r.expires_in_seconds))}"
            "</td></tr>"
            for r in records or ()
        )
        if records is None:
            stored = ""
        elif rows:
            stored = f"<table><tr><th>Stored</th><th>Kept for</th></tr>{rows}</table>"
        else:
            stored = "<p>Nothing is stored about this browser.</p>"
        action, label = (UNDO, "Allow matching again") if opted_out else (OPT_OUT, "Opt out")
        notice = f"<p><strong>{html.escape(message)}</strong></p>" if message else ""
        document = (
            f"<!doctype html><meta charset=utf-8><title>{name}: opt-out</title>"
            f"<h1>{name}: opt-out</h1>{notice}<p id=state>{state}</p>{stored}"
            f'<form method=post action="{html.escape(self.path)}">'
            f'<input type=hidden name={CSRF_FIELD} value="{token}">'
            f'<button name=action value="{action}">{label}</button></form>'
        )
        cookies = (*set_cookies, self._token_cookie.header(token))
        return Response.html(status, document, set_cookies=cookies, headers=PAGE_HEADERS)

    def refuse(self) -> Response:
        """The answer to a ``POST`` that did not come from the page: nothing changed."""
        document = (
            "<!doctype html><meta charset=utf-8><title>Refused</title>"
            "<p>This request did not come from the opt-out page; nothing was changed.</p>"
        )
        return Response.html(403, document, headers=PAGE_HEADERS)

    def submitted(self, request: Request) -> str | None:
        """The action (``OPT_OUT`` or ``UNDO``) of a genuine ``POST`` from the page, else None."""
        if not same_site(
            request.header("sec-fetch-site"), request.header("origin"), request.header("host")
        ):
            return None
        try:
            form = {p.name: p.value for p in parse_query(request.body)}
        except QueryError:
            return None
        presented = form.get(CSRF_FIELD) or ""
        expected = parse_cookie_header(request.cookie_header).get(self._token_cookie.name, "")
        if not tokens_match(presented, expected):
            return None
        action = form.get("action")
        return action if action in _ACTIONS else None
