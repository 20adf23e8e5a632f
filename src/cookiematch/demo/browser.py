"""A simulated browser for the demo: a cookie jar per host, redirects followed hop by hop,
pages loaded with their images, iframes and scripts, and a page's form submitted.

Names under ``.localhost`` are reached on loopback (as browsers do), with the name kept in
the ``Host`` header; ``Secure`` cookies are kept on such hosts, as browsers do for localhost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

MAX_SUBRESOURCES = 32


@dataclass
class Hop:
    url: str
    status: int
    location: str | None
    set_cookies: list[str]
    content_type: str | None
    body: bytes = b""


class _Subresources(HTMLParser):
    """Collects the URLs a page makes the browser load: img, iframe and script sources."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("img", "iframe", "script"):
            source = dict(attrs).get("src")
            if source:
                self.sources.append(source)


def subresources(html: str) -> list[str]:
    parser = _Subresources()
    parser.feed(html)
    return parser.sources[:MAX_SUBRESOURCES]


class _Form(HTMLParser):
    """The first form of a page: its action, its inputs, and its buttons' name and value."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.buttons: list[tuple[str, str]] = []
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "form" and self.action is None:
            self.action = found.get("action", "")
        elif self.action is not None and not self._done and "name" in found:
            if tag == "input":
                self.fields[found["name"]] = found.get("value", "")
            elif tag == "button":
                self.buttons.append((found["name"], found.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        self._done = self._done or tag == "form"


@dataclass
class SimulatedBrowser:
    """A cookie jar keyed by host name and an HTTP client that never follows redirects itself."""

    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5.0))
    jar: dict[str, dict[str, str]] = field(default_factory=dict)
    on_hop: Callable[[Hop], None] | None = None

    def cookie_header(self, host: str) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.jar.get(host, {}).items())

    def get(self, url: str) -> Hop:
        return self._request("GET", url)

    def submit(self, page: Hop, button: str) -> Hop:
        """Press the button whose value is ``button`` in the first form of ``page``: a POST of
        the form's fields from the page's own origin, as a browser sends it."""
        form = _Form()
        form.feed(page.body.decode("utf-8", "replace"))
        if form.action is None:
            raise ValueError(f"{page.url} has no form")
        fields = dict(form.fields)
        fields.update((name, value) for name, value in form.buttons if value == button)
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(page.url))
        headers = {"Origin": origin, "Sec-Fetch-Site": "same-origin"}
        return self._request("POST", urljoin(page.url, form.action), data=fields, headers=headers)

    def _request(
        self,
        method: str,
        url: str,
        *,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Hop:
        parts = urlsplit(url)
        host = parts.hostname or ""
        headers = {"User-Agent": "cookiematch-demo", **(headers or {})}
        target = url
        if host.endswith(".localhost"):
            headers["Host"] = parts.netloc
            netloc = "127.0.0.1" + (f":{parts.port}" if parts.port else "")
            target = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        cookie = self.cookie_header(host)
        if cookie:
            headers["Cookie"] = cookie
        response = self.client.request(method, target, headers=headers, data=data)
        self.client.cookies.clear()  # the jar above is the only one: hosts share 127.0.0.1
        set_cookies = response.headers.get_list("set-cookie")
        for raw in set_cookies:
            self._store_cookie(host, raw)
        hop = Hop(
            url,
            response.status_code,
            response.headers.get("location"),
            set_cookies,
            response.headers.get("content-type"),
            response.content,
        )
        if self.on_hop is not None:
            self.on_hop(hop)
        return hop

    def _store_cookie(self, host: str, raw: str) -> None:
        parsed: SimpleCookie = SimpleCookie()
        try:
            parsed.load(raw)
        except CookieError:
            return
        for name, morsel in parsed.items():
            if morsel["max-age"] == "0":
                self.jar.get(host, {}).pop(name, None)
            else:
                self.jar.setdefault(host, {})[name] = morsel.value

    def follow(
        self, url: str, *, stop: Callable[[str], bool] = lambda _: False, max_hops: int = 8
    ) -> list[Hop]:
        """Load ``url`` and follow redirects until ``stop(next_url)`` says not to fetch it."""
        hops: list[Hop] = []
        for _ in range(max_hops):
            hop = self.get(url)
            hops.append(hop)
            if hop.location is None:
                break
            url = urljoin(url, hop.location)
            if stop(url):
                break
        return hops

    def visit(self, url: str, *, depth: int = 2) -> list[Hop]:
        """Load a page and, like a browser, what it embeds (iframes recursively)."""
        hops = self.follow(url)
        final = hops[-1]
        if depth <= 0 or not (final.content_type or "").startswith("text/html"):
            return hops
        for source in subresources(final.body.decode("utf-8", "replace")):
            absolute = urljoin(final.url, source)
            if urlsplit(absolute).scheme in ("http", "https"):
                hops.extend(self.visit(absolute, depth=depth - 1))
        return hops

    def close(self) -> None:
        self.client.close()
