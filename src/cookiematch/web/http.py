"""The request and response values that pixel handlers see: small, immutable, server-agnostic.

A handler is ``async def handler(request: Request) -> Response``. Adapters (``rsgi``, ``asgi``)
build the ``Request`` from their server's scope and write the ``Response`` back; handlers never
see a server object.

Every ``Response`` checks its headers when it is built: names must be RFC 9110 tokens and values
printable ASCII (so no CR, LF, NUL, other controls or tabs; URLs and cookies are percent-encoded
before they get here), otherwise ``ValueError``. Header injection is impossible by construction,
whatever a handler passes in, and every server sees the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
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
    """Read-only request headers; names are case-insensitive, keys come back lowercase.

    The shape of granian's RSGI headers object, so the RSGI adapter passes it through
    untouched (no copy): ``get`` gives the first value of a name, ``get_all`` every value,
    ``items`` every (name, value) pair in wire order, repeats included.
    """

    def get(self, name: str, default: str | None = None) -> str | None: ...

    def get_all(self, name: str) -> list[str]: ...

    def items(self) -> list[tuple[str, str]]: ...

    def keys(self) -> list[str]: ...

    def __contains__(self, name: str) -> bool: ...


class Headers:
    """``RequestHeaders`` built from (name, value) pairs (ASGI adapter, tests)."""

    __slots__ = ("_first", "_pairs")

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs = [(name.lower(), value) for name, value in pairs]
        first: dict[str, str] = {}
        for name, value in self._pairs:
            first.setdefault(name, value)
        self._first = first

    @classmethod
    def from_asgi(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        """From ASGI's (bytes, bytes) pairs, decoded as latin-1."""
        return cls((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._first.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._first[name.lower()]

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._first

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self._pairs if key == name]

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def keys(self) -> list[str]:
        return list(self._first)

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


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
        values = self.headers.get_all("cookie")
        return values[0] if len(values) == 1 else "; ".join(values)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or _TOKEN.fullmatch(name) is None:
        raise ValueError(f"invalid header name: {name!r}")
    if len(_checked_names) < 1024:
        _checked_names.add(name)


def _check_value(name: str, value: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"header {name} value must be str, not {type(value).__name__}")
    raise ValueError(f"header {name} value is not printable ASCII: {value[:80]!r}")


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
        for name, value in self.headers:
            if name not in _checked_names:
                _check_name(name)
            # isascii and isprintable are C-fast; together they reject CR, LF, NUL
            if not (type(value) is str and value.isascii() and value.isprintable()):
                _check_value(name, value)
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
        if not 300 <= status <= 399:
            raise ValueError(f"not a redirect status: {status}")
        headers: HeaderPairs = (("Location", location), _NO_STORE)
        if set_cookies:
            headers += tuple([("Set-Cookie", cookie) for cookie in set_cookies])
        return cls(status, headers)

    @classmethod
    def pixel(cls, set_cookies: Sequence[str] = (), *, status: int = 200) -> Response:
        """The 1x1 transparent GIF, no-store."""
        headers: HeaderPairs = (("Content-Type", "image/gif"), _NO_STORE)
        if set_cookies:
            headers += tuple([("Set-Cookie", cookie) for cookie in set_cookies])
        return cls(status, headers, TRANSPARENT_GIF)

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
    def html(
        cls,
        status: int,
        document: str,
        *,
        set_cookies: Sequence[str] = (),
        headers: Sequence[tuple[str, str]] = (),
    ) -> Response:
        """An HTML document (already escaped by the caller), no-store."""
        pairs = [("Content-Type", "text/html; charset=utf-8"), _NO_STORE, *headers]
        pairs.extend(("Set-Cookie", cookie) for cookie in set_cookies)
        return cls(status, tuple(pairs), document.encode())


Handler = Callable[[Request], Awaitable[Response]]
"""A hot-route handler: a parsed request in, a response out; no server types."""
