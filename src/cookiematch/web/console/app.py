"""The operator console of one role, served under ``/console`` by the role's admin app:

    GET  /console                    the first page (logged in), else the login form
    GET  /console/login              the form: the admin token, or (exchange) a buyer's API
                                     credential
    POST /console/login              a valid token: a session cookie (``session.py``) and a
                                     303 to the first page; else 401 and the form again
    POST /console/logout             clears the session; 303 to the login form
    GET  /console/static/{name}      the vendored uPlot, ``console.js``, ``console.css``
    GET  /console/api/series         a time series as JSON (``series.py``): ``name``,
                                     ``minutes``, optional ``ratio=num,den``, ``share`` and
                                     ``only``
    GET  <each page's path>          a role's ``Page``s; ``POST`` to a page with a ``post``
                                     handler

Every ``POST`` must carry the session's CSRF token in its form (the login form: the token of
its own ``SameSite=Strict`` cookie) and, when the browser sends them, ``Sec-Fetch-Site`` and
``Origin`` of this site (``web/csrf.py``): else 403, nothing changed. A page a session may not
see is 403; without a session every page redirects (303) to the login form, a relative
``Location`` on this console only. Bodies are capped at ``MAX_FORM_BYTES`` (413).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from html import escape
from importlib import resources
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from cookiematch.errors import StorageError
from cookiematch.web.admin import Authenticate, Principal, json_response, read_body
from cookiematch.web.console import html
from cookiematch.web.console.series import SeriesLog
from cookiematch.web.console.session import LOGIN_COOKIE_NAME, PATH, Session, Sessions
from cookiematch.web.csrf import new_token, same_site, tokens_match

__all__ = ["MAX_FORM_BYTES", "Console", "Form", "Page"]

log = logging.getLogger("cookiematch.console")

MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 64
MAX_MINUTES = 31 * 24 * 60
STATIC_TYPES = {
    "uplot.iife.min.js": "text/javascript; charset=utf-8",
    "uplot.min.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Form:
    """A posted console form: its fields, and the session that posted it."""

    fields: dict[str, str]
    session: Session


Render = Callable[[Request, Session], Awaitable[str]]
Post = Callable[[Request, Form], Awaitable[tuple[str, int]]]
"""A form's handler: the page's body after the change (or its refusal) and the status."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page: ``path`` (a Starlette path under ``/console``), its ``render``ed body,
    whether it is listed in the navigation, and who may open it (``party``: a buyer's
    session too; its render shows that party's own things only)."""

    path: str
    title: str
    render: Render
    post: Post | None = None
    party: bool = False
    nav: bool = True


def _static(name: str) -> bytes:
    return resources.files("cookiematch.web.console").joinpath("static", name).read_bytes()


class Console:
    """The console of one role over its pages, sessions and time series."""

    def __init__(
        self,
        role: str,
        admin_token: str,
        pages: Sequence[Page],
        series: SeriesLog,
        sessions: Sessions,
        *,
        authenticate: Authenticate | None = None,
        still_valid: Callable[[Principal], bool] = lambda _: True,
    ) -> None:
        self.role = role
        self._token = admin_token.encode()
        self._pages = list(pages)
        self._series = series
        self._sessions = sessions
        self._authenticate = authenticate
        self._still_valid = still_valid
        self._static = {name: _static(name) for name in STATIC_TYPES}

    # -- sessions and forms -------------------------------------------------------------

    def _principal(self, token: str) -> Principal | None:
        if self._token and hmac.compare_digest(token.encode(), self._token):
            return Principal()
        if self._authenticate is None or not token or not self._token:
            return None
        return self._authenticate(token)

    def session(self, request: Request) -> Session | None:
        found = self._sessions.read(request.headers.get("cookie", ""))
        if found is None or not self._still_valid(found.principal):
            return None
        return found

    async def _form(self, request: Request) -> dict[str, str] | None:
        """The posted fields if the request came from this site, else None."""
        headers = request.headers
        if not same_site(headers.get("sec-fetch-site"), headers.get("origin"), headers.get("host")):
            return None
        body = await read_body(request, MAX_FORM_BYTES)
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except (UnicodeDecodeError, ValueError):
            return None
        return dict(pairs)

    def _secure(self, request: Request) -> bool:
        return request.url.scheme == "https"

    # -- responses ------------------------------------------------------------------------

    def _nav(self, session: Session) -> list[tuple[str, str]]:
        return [
            (f"{PATH}{p.path}", p.title)
            for p in self._pages
            if p.nav and (p.party or session.principal.party is None)
        ]

    def page(self, title: str, body: str, session: Session, status: int = 200) -> Response:
        who = session.principal.party or "operator"
        document = html.document(
            title, body, role=self.role, nav=self._nav(session), csrf=session.csrf, who=who
        )
        return HTMLResponse(document, status, headers=html.HEADERS)

    def _plain(self, title: str, text: str, status: int) -> Response:
        document = html.document(title, f"<p>{escape(text)}</p>", role=self.role)
        return HTMLResponse(document, status, headers=html.HEADERS)

    def _refused(self) -> Response:
        return self._plain(
            "Refused", "This request did not come from the console; nothing changed.", 403
        )

    def _login_form(self, request: Request, message: str = "", status: int = 200) -> Response:
        token = new_token()
        label = "Admin token" if self._authenticate is None else "Admin token or API credential"
        notice = f"<p class=error>{escape(message)}</p>" if message else ""
        body = (
            f"{notice}<form class=login method=post action='{PATH}/login'>"
            f"{html.form_token(token)}<label>{label} "
            "<input type=password name=token autocomplete=current-password required></label>"
            "<button>Log in</button></form>"
        )
        document = html.document("Log in", body, role=self.role)
        response = HTMLResponse(document, status, headers=html.HEADERS)
        cookie = self._sessions.cookie(self._secure(request), name=LOGIN_COOKIE_NAME, max_age=3600)
        response.headers.append("set-cookie", cookie.header(token))
        return response

    @staticmethod
    def _see(path: str, *cookies: str) -> Response:
        response = RedirectResponse(path, 303, headers={"Cache-Control": "no-store"})
        for cookie in cookies:
            response.headers.append("set-cookie", cookie)
        return response

    # -- endpoints --------------------------------------------------------------------------

    async def _home(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self._see(f"{PATH}/login")
        return self._see(self._nav(session)[0][0])

    async def _login(self, request: Request) -> Response:
        if request.method == "GET":
            return self._login_form(request)
        fields = await self._form(request)
        expected = request.cookies.get(LOGIN_COOKIE_NAME, "")
        if fields is None or not tokens_match(fields.get(html.CSRF_FIELD, ""), expected):
            return self._refused()
        principal = self._principal(fields.get("token", "").strip())
        if principal is not None and not any(p.party for p in self._pages):
            principal = principal if principal.party is None else None  # nothing it may see
        if principal is None:
            log.info("console: a login with an unknown token was refused")
            return self._login_form(request, "Unknown token.", 401)
        value, session = self._sessions.issue(principal)
        log.info("console: %s logged in", principal.party or "the operator")
        secure = self._secure(request)
        cookie = self._sessions.cookie(secure).header(value)
        done = self._sessions.cookie(secure, name=LOGIN_COOKIE_NAME).expire_header()
        return self._see(self._nav(session)[0][0], cookie, done)

    async def _logout(self, request: Request) -> Response:
        session = self.session(request)
        fields = await self._form(request)
        if (
            session is None
            or fields is None
            or not tokens_match(fields.get(html.CSRF_FIELD, ""), session.csrf)
        ):
            return self._refused()
        return self._see(
            f"{PATH}/login", self._sessions.cookie(self._secure(request)).expire_header()
        )

    async def _asset(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        if name not in self._static:
            return Response("not found\n", 404, media_type="text/plain")
        headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
        return Response(self._static[name], headers=headers, media_type=STATIC_TYPES[name])

    async def _series_api(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return json_response({"detail": "not logged in"}, 401)
        query = request.query_params
        selection = self._series.selections.get(query.get("name", ""))
        minutes = query.get("minutes", "60")
        valid = minutes.isascii() and minutes.isdigit() and 0 < int(minutes) <= MAX_MINUTES
        if selection is None or not valid:
            return json_response({"detail": "expected name=<series>&minutes=<1..44640>"}, 400)
        party = session.principal.party
        if party is not None and selection.party_label is None:
            return json_response({"detail": "the operator's only"}, 403)
        try:
            lines = await self._series.read(selection.name, int(minutes) * 60, party)
        except StorageError:
            return json_response({"detail": "the store is unavailable"}, 503)
        ratio = query.get("ratio", "")
        if ratio:
            numerator, _, denominator = ratio.partition(",")
            lines = lines.ratio(numerator, denominator)
        share = query.get("share", "")
        if share:
            lines = lines.share(share)
        only = query.get("only")
        if only:
            lines = lines.only(only)
        rate = selection.counter and not ratio and not share
        data = {"t": lines.t, "lines": lines.lines, "counter": rate}
        return json_response(data, headers={"Cache-Control": "no-store"})

    def _page_endpoint(self, page: Page) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = self.session(request)
            if session is None:
                if request.method == "POST":
                    return self._refused()
                return self._see(f"{PATH}/login")
            if session.principal.party is not None and not page.party:
                return self._plain("Forbidden", "This page is the operator's only.", 403)
            if request.method == "POST":
                assert page.post is not None
                fields = await self._form(request)
                if fields is None or not tokens_match(
                    fields.get(html.CSRF_FIELD, ""), session.csrf
                ):
                    return self._refused()
                body, status = await page.post(request, Form(fields, session))
                return self.page(page.title, body, session, status)
            try:
                body = await page.render(request, session)
            except StorageError:
                body = "<p class=error>The store is unavailable; figures could not be read.</p>"
                return self.page(page.title, body, session, 503)
            return self.page(page.title, body, session)

        return endpoint

    def routes(self) -> list[BaseRoute]:
        """The console's routes, for the role's admin app."""
        routes: list[BaseRoute] = [
            Route(PATH, self._home, methods=["GET"]),
            Route(f"{PATH}/login", self._login, methods=["GET", "POST"]),
            Route(f"{PATH}/logout", self._logout, methods=["POST"]),
            Route(f"{PATH}/static/{{name}}", self._asset, methods=["GET"]),
            Route(f"{PATH}/api/series", self._series_api, methods=["GET"]),
        ]
        for page in self._pages:
            methods = ["GET", "POST"] if page.post is not None else ["GET"]
            routes.append(Route(f"{PATH}{page.path}", self._page_endpoint(page), methods=methods))
        return routes
