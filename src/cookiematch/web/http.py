"""The request and response values that pixel handlers see: small, immutable, server-agnostic.

A handler is ``async def handler(request: Request) -> Response``. Adapters (``rsgi``, ``asgi``)
build the ``Request`` from their server's scope and write the ``Response`` back; handlers never
see a server object.

Every ``Response`` checks its headers when it is built: names must be RFC 9110 tokens and values
may not contain CR, LF or NUL, otherwise ``ValueError``. Header injection is impossible by
construction, whatever a handler passes in.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import msgspec

from cookiematch.protocol.pixel import TRANSPARENT_GIF

__all__ = [
    "Handler",
    "HeaderPairs",
    "Headers",
    "Request",
    "RequestHeaders",
    "Response",
]

HeaderPairs = tuple[tuple[str, str], ...]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_checked_names: set[str] = set()


class RequestHeaders(Protocol):
    """Read-only request headers, names case-insensitive.

    ``get`` gives the first value of a name, ``getlist`` every value, ``pairs`` every
    (lowercase name, value) pair in wire order.
    """

    def get(self, name: str, default: str | None = None) -> str | None: ...

    def getlist(self, name: str) -> list[str]: ...

    def pairs(self) -> Sequence[tuple[str, str]]: ...

    def __contains__(self, name: object) -> bool: ...


class Headers(Mapping[str, str]):
    """Request headers from (name, value) pairs: a read-only mapping name -> first value."""

    __slots__ = ("_first", "_pairs")

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs = tuple((name.lower(), value) for name, value in pairs)
        first: dict[str, str] = {}
        for name, value in self._pairs:
            first.setdefault(name, value)
        self._first = first

    @classmethod
    def from_asgi(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        """From ASGI's list of (bytes, bytes) pairs, decoded as latin-1."""
        return cls((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw)

    def __getitem__(self, name: str) -> str:
        return self._first[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def getlist(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self._pairs if key == name]

    def pairs(self) -> Sequence[tuple[str, str]]:
        return self._pairs

    def __repr__(self) -> str:
        return f"Headers({list(self._pairs)!r})"


class Request(NamedTuple):
    """One parsed HTTP request, as much as a pixel handler needs.

    ``path`` is percent-decoded (both servers decode it); ``query`` is the raw query string
    without ``?``, never decoded; ``scheme`` is ``"http"`` or ``"https"``; ``client`` is the
    peer IP without port (no proxy header is trusted here); ``body`` is read only for routes
    that ask for it (``Route.read_body``).
    """

    method: str
    path: str
    query: str
    headers: RequestHeaders
    scheme: str
    client: str
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        return self.headers.get(name)

    @property
    def cookie_header(self) -> str:
        """Every Cookie header joined by ``"; "`` (HTTP/2 may split them); ``""`` if none."""
        values = self.headers.getlist("cookie")
        if len(values) == 1:
            return values[0]
        return "; ".join(values)


def _check_header(name: str, value: str) -> None:
    if name not in _checked_names:
        if not isinstance(name, str) or _TOKEN.fullmatch(name) is None:
            raise ValueError(f"invalid header name: {name!r}")
        if len(_checked_names) < 1024:
            _checked_names.add(name)
    if not isinstance(value, str):
        raise ValueError(f"header {name} value must be str, not {type(value).__name__}")
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"header {name} value contains CR, LF or NUL")


_NO_STORE = ("Cache-Control", "no-store")


@dataclass(frozen=True, slots=True)
class Response:
    """Status, headers (ordered pairs, repeats allowed) and body. Headers are validated here."""

    status: int
    headers: HeaderPairs = ()
    body: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.status, int) or not 100 <= self.status <= 599:
            raise ValueError(f"invalid status: {self.status!r}")
        if not isinstance(self.headers, tuple):
            object.__setattr__(self, "headers", tuple(self.headers))
        for pair in self.headers:
            name, value = pair
            _check_header(name, value)
        if not isinstance(self.body, bytes):
            raise ValueError("body must be bytes")

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def with_headers(self, *pairs: tuple[str, str]) -> Response:
        """A copy with ``pairs`` appended (validated like any header)."""
        return Response(self.status, self.headers + tuple(pairs), self.body)

    @classmethod
    def redirect(
        cls, location: str, set_cookies: Sequence[str] = (), *, status: int = 302
    ) -> Response:
        """A no-store redirect; ``set_cookies`` are complete Set-Cookie header values."""
        headers = [("Location", location), _NO_STORE]
        headers.extend(("Set-Cookie", cookie) for cookie in set_cookies)
        return cls(status, tuple(headers))

    @classmethod
    def pixel(cls, set_cookies: Sequence[str] = (), *, status: int = 200) -> Response:
        """The 1x1 transparent GIF, no-store."""
        headers = [("Content-Type", "image/gif"), _NO_STORE]
        headers.extend(("Set-Cookie", cookie) for cookie in set_cookies)
        return cls(status, tuple(headers), TRANSPARENT_GIF)

    @classmethod
    def no_content(cls, set_cookies: Sequence[str] = ()) -> Response:
        """204, no-store."""
        headers = [_NO_STORE, *(("Set-Cookie", cookie) for cookie in set_cookies)]
        return cls(204, tuple(headers))

    @classmethod
    def text(cls, status: int, message: str) -> Response:
        """A plain UTF-8 text body, no-store."""
        return cls(
            status,
            (("Content-Type", "text/plain; charset=utf-8"), _NO_STORE),
            message.encode(),
        )

    @classmethod
    def json(cls, status: int, obj: object, *, content_type: str = "application/json") -> Response:
        """``obj`` encoded by msgspec (dicts, lists, str, numbers, Structs, dataclasses...)."""
        return cls(status, (("Content-Type", content_type), _NO_STORE), msgspec.json.encode(obj))

    @classmethod
    def html(cls, status: int, document: str, *, headers: Sequence[tuple[str, str]] = ()) -> Response:
        """An HTML document (already escaped by the caller), no-store."""
        pairs = (("Content-Type", "text/html; charset=utf-8"), _NO_STORE, *headers)
        return cls(status, pairs, document.encode())


Handler = Callable[[Request], Awaitable[Response]]
"""A hot-route handler: a parsed request in, a response out; no server types."""
