"""http(s) URLs: the one parser behind every URL cookiematch is configured with.

    http[s]://host[:port][/path][?query][#fragment]

Buyer redirect and push templates, partner sync templates, tag, bidder, exchange, pull,
destination and public URLs and allowed origins are all read here, so they agree on what a
URL is. A refusal raises :class:`~cookiematch.errors.InvalidURL`; its ``reason`` says what is
wrong ("must not contain user info"). The rules:

- a string of at most ``MAX_URL_LENGTH`` characters, without leading or trailing whitespace;
- scheme ``http`` or ``https`` (any case; lower case in the parsed value), then ``//``;
- no user info (``user:password@``): a configured URL is logged, rendered into pages and
  handed to browsers, and the configuration has secret fields for credentials;
- host: a DNS name (labels of 1-63 letters, digits, ``_`` and inner ``-``; at most 253
  characters; one trailing dot allowed), a dotted-decimal IPv4 address (a name whose last
  label is numeric must be one), or an IPv6 address in brackets (no zone). An
  internationalised name is written in its ASCII ``xn--`` form;
- port: 1-65535 in decimal without a leading zero; a ``:`` without a port is refused;
- already encoded: the path, query and fragment hold only the characters RFC 3986 allows
  there (unreserved, sub-delimiters, ``:@/``, and ``?`` after the path), so no space,
  control, non-ASCII, ``[`` ``]`` or any of ``"<>\\^`{|}``; every ``%`` starts a ``%XX``;
- a query needs a path: ``http://host/?q``, not ``http://host?q``;
- an absolute URL (RFC 3986 ``absolute-URI``, what :func:`parse_absolute_url` accepts) has
  no fragment.

A template passes its macro pattern (``macros``): text that matches it is exempt from the
character rules of the path and the query, and refused in the scheme and the host, so the
destination of a template is fixed when it is configured.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from cookiematch.errors import InvalidURL

MAX_URL_LENGTH = 2048
MAX_HOST_LENGTH = 253

# RFC 3986 appendix B: splits any string (every group may be empty or absent).
_SPLIT = re.compile(
    r"(?:([A-Za-z][A-Za-z0-9+.-]*):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?", re.DOTALL
)
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")
_QUERY_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SCHEMES = ("http", "https")
_COMPONENTS = ((3, "path", _PATH_CHARS), (4, "query", _QUERY_CHARS), (5, "fragment", _QUERY_CHARS))


@dataclass(frozen=True, slots=True)
class HttpURL:
    """A parsed http(s) URL, its parts as written. Build it with :func:`parse_url`."""

    scheme: str  # "http" or "https"
    host: str  # a name or an IPv4 address, or an IPv6 address without its brackets
    port: int | None  # None: the scheme's default
    path: str  # "" or starting with "/"
    query: str | None = None  # None: no "?"
    fragment: str | None = None  # None: no "#"

    @property
    def authority(self) -> str:
        """``host[:port]``, an IPv6 host in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        """``scheme://host[:port]``."""
        return f"{self.scheme}://{self.authority}"

    def __str__(self) -> str:
        query = "" if self.query is None else f"?{self.query}"
        fragment = "" if self.fragment is None else f"#{self.fragment}"
        return f"{self.origin}{self.path}{query}{fragment}"


def parse_url(url: str, *, macros: re.Pattern[str] | None = None) -> HttpURL:
    """``url`` parsed and validated by the rules above (a fragment allowed); raises
    InvalidURL."""
    if not isinstance(url, str):
        raise InvalidURL("must be a string")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURL(f"is longer than {MAX_URL_LENGTH} characters")
    if url[:1].isspace() or url[-1:].isspace():
        raise InvalidURL("has leading or trailing whitespace")
    masked = url if macros is None else macros.sub(lambda m: "~" * len(m.group()), url)
    split = _SPLIT.fullmatch(masked)
    assert split is not None  # the pattern matches any string
    scheme, authority = split.group(1), split.group(2)
    if scheme is None or scheme.lower() not in _SCHEMES or authority is None:
        raise InvalidURL("must be absolute http:// or https://")
    if authority != url[split.start(2) : split.end(2)]:
        raise InvalidURL("macros are not allowed in the host")
    host, port = _parse_authority(authority)
    path = url[split.start(3) : split.end(3)]
    query, fragment = (
        None if split.group(i) is None else url[split.start(i) : split.end(i)] for i in (4, 5)
    )
    if query is not None and not path:
        raise InvalidURL("needs a path before its query: http://host/?query")
    for group, name, allowed in _COMPONENTS:
        _check_component(url, split, group, name, allowed)
    return HttpURL(scheme.lower(), host, port, path, query, fragment)


def parse_absolute_url(url: str, *, macros: re.Pattern[str] | None = None) -> HttpURL:
    """:func:`parse_url`, and refused with a fragment; raises InvalidURL."""
    parsed = parse_url(url, macros=macros)
    if parsed.fragment is not None:
        raise InvalidURL("must not have a fragment")
    return parsed


def parse_origin(text: str) -> HttpURL:
    """``scheme://host[:port]`` and nothing more (a page origin); raises InvalidURL."""
    parsed = parse_absolute_url(text)
    if parsed.path or parsed.query is not None:
        raise InvalidURL("must be scheme://host[:port], without a path")
    return parsed


def _check_component(
    url: str, split: re.Match[str], group: int, name: str, allowed: re.Pattern[str]
) -> None:
    """Refuse a forbidden character or a bad ``%`` in one component (``split`` is of the URL
    with its macros masked; ``url`` is quoted)."""
    text = split.group(group)
    if not text:
        return
    if allowed.fullmatch(text) is None:
        bad = next(char for char in text if allowed.fullmatch(char) is None)
        raise InvalidURL(f"has a forbidden character {bad!r} in the {name} (encode it as %XX)")
    percent = _BAD_PERCENT.search(text)
    if percent is not None:
        start = split.start(group) + percent.start()
        raise InvalidURL(f"has bad percent-encoding in the {name}: {url[start : start + 3]!r}")


def _parse_authority(authority: str) -> tuple[str, int | None]:
    """``(host, port)`` of ``host[:port]``; IPv6 brackets removed."""
    if "@" in authority:
        raise InvalidURL("must not contain user info")
    if authority.startswith("["):
        end = authority.find("]")
        host, rest = authority[1:end], authority[end + 1 :]
        if end == -1 or not (rest == "" or rest.startswith(":")):
            raise InvalidURL(f"has no valid host: {authority!r}")
        _check_ipv6(host)
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_or_empty = authority.partition(":")
        _check_host(host)
        port_text = port_text_or_empty if colon else None
    if port_text is None:
        return host, None
    if _PORT.fullmatch(port_text) is None or int(port_text) > 65535:
        raise InvalidURL(f"has an invalid port: {port_text!r} (expected 1-65535, no leading zero)")
    return host, int(port_text)


def _check_ipv6(host: str) -> None:
    try:
        if "%" in host:  # a zone ("fe80::1%eth0") means nothing outside this machine
            raise ValueError(host)
        ipaddress.IPv6Address(host)
    except ValueError:
        raise InvalidURL(f"has no valid host: '[{host}]' (not an IPv6 address)") from None


def _check_host(host: str) -> None:
    if not host.isascii():
        raise InvalidURL(
            f"has no valid host: {host!r} (write an internationalised name in its xn-- form)"
        )
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > MAX_HOST_LENGTH:
        raise InvalidURL(f"has no valid host: {host!r}")
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidURL(f"has no valid host: {host!r}")
    if labels[-1].isdigit():
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise InvalidURL(f"has no valid host: {host!r} (not an IPv4 address)") from None
