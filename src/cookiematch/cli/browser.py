"""A simulated browser for the demo: follows redirects hop by hop and keeps cookies per host.

It keeps ``Secure`` cookies on plain-http loopback hosts, as browsers do for localhost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import urljoin, urlsplit

import httpx


@dataclass
class Hop:
    url: str
    status: int
    location: str | None
    set_cookies: list[str]
    content_type: str | None


@dataclass
class SimulatedBrowser:
    """A cookie jar keyed by host and an HTTP client that never follows redirects itself."""

    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5.0))
    jar: dict[str, dict[str, str]] = field(default_factory=dict)

    def cookie_header(self, host: str) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.jar.get(host, {}).items())

    def get(self, url: str) -> Hop:
        host = urlsplit(url).netloc
        headers = {"User-Agent": "cookiematch-demo"}
        cookie = self.cookie_header(host)
        if cookie:
            headers["Cookie"] = cookie
        response = self.client.get(url, headers=headers)
        set_cookies = response.headers.get_list("set-cookie")
        for raw in set_cookies:
            parsed: SimpleCookie = SimpleCookie()
            parsed.load(raw)
            for name, morsel in parsed.items():
                if morsel["max-age"] == "0":
                    self.jar.get(host, {}).pop(name, None)
                else:
                    self.jar.setdefault(host, {})[name] = morsel.value
        location = response.headers.get("location")
        return Hop(
            url, response.status_code, location, set_cookies, response.headers.get("content-type")
        )

    def follow(self, url: str, *, stop: Callable[[str], bool], max_hops: int = 5) -> list[Hop]:
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

    def close(self) -> None:
        self.client.close()
