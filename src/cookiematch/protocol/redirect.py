"""Buyer redirect URLs: validated and compiled once, rendered per request with macros.

A template is split at compile time into literal text and macro slots; rendering is a join of
literals and already-encoded values, followed by the response parameters no macro placed and
the extras. Every value is percent-encoded here, and the literals were checked at compile
time, so a rendered URL never contains a space, a control character or a raw non-ASCII byte:
header injection through ``Location`` is impossible by construction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cookiematch.errors import InvalidURL, RedirectURLError
from cookiematch.protocol.query import QueryParam, encode_component, encode_param
from cookiematch.protocol.url import MAX_URL_LENGTH, parse_absolute_url

MAX_REDIRECT_URL_LENGTH = MAX_URL_LENGTH

# Macro codes, in the order the response parameters are appended (push first, as in the
# document's "Without macros" example, then gid, cver, ula..., hm, error).
_PUSH, _GID, _CVER, _ULA, _HM, _ERROR = range(6)
_MACRO_CODES = {"PUSH": _PUSH, "GID": _GID, "CVER": _CVER, "ULA": _ULA, "HM": _HM, "ERROR": _ERROR}
_PARAM_NAMES = (
    "google_push",
    "google_gid",
    "google_cver",
    "google_ula",
    "google_hm",
    "google_error",
)
_PAIR_PREFIXES = tuple(f"&{name}=" for name in _PARAM_NAMES)
_APPEND_PREFIXES = tuple(f"{name}=" for name in _PARAM_NAMES)

# The privacy macros: the match tag's privacy parameter of that name, as received (encoded),
# or nothing. They place a value; the parameter itself still passes through with the extras.
_PRIVACY_MACROS = {
    "GDPR": "gdpr",
    "GDPR_CONSENT": "gdpr_consent",
    "US_PRIVACY": "us_privacy",
    "GPP": "gpp",
    "GPP_SID": "gpp_sid",
}
_PRIVACY_CODES = {name: 6 + i for i, name in enumerate(_PRIVACY_MACROS)}
_PRIVACY_PARAM_OF_CODE = {code: _PRIVACY_MACROS[name] for name, code in _PRIVACY_CODES.items()}
_CODES = len(_MACRO_CODES) + len(_PRIVACY_MACROS)

# %%GOOGLE_X%% or %%GOOGLE_X_PAIR%%; a _PAIR macro may lack its closing %% when followed by
# '&', '#' or the end (the document's own example writes %%GOOGLE_GID_PAIR&y=2); or a privacy
# macro, %%GDPR%% … %%GPP_SID%%.
_MACRO = re.compile(
    r"%%(?:GOOGLE_(GID|CVER|PUSH|ERROR|HM|ULA)(?:(_PAIR)(?:%%|(?=[&#]|$))|%%)"
    r"|(GDPR_CONSENT|GDPR|US_PRIVACY|GPP_SID|GPP)%%)",
)

_Part = str | tuple[int, bool]  # a literal, or (macro code, is _PAIR)


@dataclass(frozen=True, slots=True)
class ResponseParams:
    """The ``google_`` response parameters of one redirect (values not yet encoded)."""

    gid: str | None = None
    cver: int | None = None
    user_lists: tuple[tuple[str, int], ...] = ()  # (list id as received, status)
    hosted_match: int | None = None  # status, only on failure
    error: int | None = None
    push: str | None = None  # used by the exchange's pixel-matching URLs


def _strip_reserved_params(query: str) -> str:
    """Drop literal ``google_`` parameters of the configured query (the document: they are not
    passed to the buyer); ``google_x=%%GOOGLE_X%%``-style pieces carrying a macro stay."""
    pieces = query.split("&")
    kept = [
        piece for piece in pieces if not (piece.startswith("google_") and "%%GOOGLE_" not in piece)
    ]
    return query if len(kept) == len(pieces) else "&".join(kept)


def _check_macros(url: str) -> None:
    """Refuse ``%%`` outside a known macro (an unknown or malformed one)."""
    for literal in _MACRO.sub("\n", url).split("\n"):
        index = literal.find("%%")
        if index != -1:
            raise RedirectURLError(f"unknown or malformed macro: {literal[index:]!r}")


def _tokenize(text: str) -> list[_Part]:
    parts: list[_Part] = []
    position = 0
    for match in _MACRO.finditer(text):
        parts.append(text[position : match.start()])
        if match.group(3) is not None:
            parts.append((_PRIVACY_CODES[match.group(3)], False))
        else:
            parts.append((_MACRO_CODES[match.group(1)], match.group(2) is not None))
        position = match.end()
    parts.append(text[position:])
    return [part for part in parts if part != ""]


def _encode_extras(extras: Sequence[QueryParam]) -> list[str]:
    """Encoded extras; ``google_`` names (reserved) and empty names are never forwarded."""
    return [encode_param(p) for p in extras if p.name and not p.name.startswith("google_")]


class RedirectTemplate:
    """A buyer's base URL, validated (an absolute http(s) URL by ``protocol/url.py``, macros
    known and only in the path and query) and split into literal parts and macros.

    ``compile`` raises RedirectURLError.
    """

    __slots__ = (
        "_has_query",
        "_http",
        "_https",
        "_placed",
        "_static_http",
        "_static_https",
        "_static_sep",
        "_url",
    )

    def __init__(self, url: str, parts: list[_Part]) -> None:
        """Use :meth:`compile`; ``parts`` is the path and query after ``scheme:``."""
        self._url = url
        self._has_query = any(isinstance(part, str) and "?" in part for part in parts)
        self._placed = frozenset(part[0] for part in parts if isinstance(part, tuple))
        first = parts[0]
        assert isinstance(first, str)  # the authority is never a macro
        self._http: tuple[_Part, ...] = ("http" + first, *parts[1:])
        self._https: tuple[_Part, ...] = ("https" + first, *parts[1:])
        if len(parts) == 1:
            self._static_http: str | None = "http" + first
            self._static_https: str | None = "https" + first
            self._static_sep: str = self._separator(first)
        else:
            self._static_http = self._static_https = None
            self._static_sep = ""

    @classmethod
    def compile(cls, url: str) -> RedirectTemplate:
        if not isinstance(url, str):
            raise RedirectURLError("a redirect URL must be a string")
        _check_macros(url)
        try:
            parsed = parse_absolute_url(url, macros=_MACRO)
        except InvalidURL as exc:
            raise RedirectURLError(f"redirect URL {exc.reason}") from None
        tail = parsed.path
        if parsed.query is not None:
            tail = f"{tail}?{_strip_reserved_params(parsed.query)}"
        parts = _tokenize(tail)
        if parts and isinstance(parts[0], str):
            parts[0] = f"://{parsed.authority}{parts[0]}"
        else:
            parts.insert(0, f"://{parsed.authority}")
        return cls(url, parts)

    @property
    def url(self) -> str:
        """The URL as configured."""
        return self._url

    @property
    def placed(self) -> frozenset[str]:
        """The response parameter names that macros place (they are not appended)."""
        return frozenset(_PARAM_NAMES[code] for code in self._placed if code < len(_PARAM_NAMES))

    def _separator(self, base: str) -> str:
        if not self._has_query:
            return "?"
        return "" if base.endswith(("?", "&")) else "&"

    def render(
        self,
        scheme: str,
        response: ResponseParams,
        extras: Sequence[QueryParam] = (),
        *,
        extras_first: bool = True,
    ) -> str:
        """The full redirect URL: scheme replaced, macros expanded, the rest appended.

        With ``response.error`` set only ``google_error`` is rendered (plus the extras).
        Extras named ``google_...`` (or with an empty name) are never forwarded.
        """
        if scheme == "https":
            base = self._static_https
        elif scheme == "http":
            base = self._static_http
        else:
            raise RedirectURLError(f"redirect scheme must be http or https, not {scheme!r}")
        if base is None:
            return self._render_macros(scheme, response, extras, extras_first)

        # No macros (the common case): append everything, without the per-macro bookkeeping.
        pieces: list[str] = _encode_extras(extras) if extras and extras_first else []
        if response.error is not None:
            pieces.append(f"google_error={response.error:d}")
        else:
            if response.push is not None:
                pieces.append("google_push=" + encode_component(response.push))
            if response.gid is not None:
                pieces.append("google_gid=" + encode_component(response.gid))
            if response.cver is not None:
                pieces.append(f"google_cver={response.cver:d}")
            for raw_id, status in response.user_lists:
                pieces.append(f"google_ula={encode_component(raw_id)},{status:d}")
            if response.hosted_match is not None:
                pieces.append(f"google_hm={response.hosted_match:d}")
        if extras and not extras_first:
            pieces += _encode_extras(extras)
        if not pieces:
            return base
        return base + self._static_sep + "&".join(pieces)

    def _render_macros(
        self,
        scheme: str,
        response: ResponseParams,
        extras: Sequence[QueryParam],
        extras_first: bool,
    ) -> str:
        # Encoded values per macro code; a list for google_ula (one entry per list).
        values: list[str | None] = [None] * _CODES
        ula: list[str] = []
        for code, name in _PRIVACY_PARAM_OF_CODE.items():
            if code in self._placed:
                found = next((p.value for p in extras if p.name == name), None)
                values[code] = encode_component(found or "")
        if response.error is not None:
            values[_ERROR] = f"{response.error:d}"
        else:
            if response.push is not None:
                values[_PUSH] = encode_component(response.push)
            if response.gid is not None:
                values[_GID] = encode_component(response.gid)
            if response.cver is not None:
                values[_CVER] = f"{response.cver:d}"
            ula = [
                f"{encode_component(raw_id)},{status:d}" for raw_id, status in response.user_lists
            ]
            if response.hosted_match is not None:
                values[_HM] = f"{response.hosted_match:d}"

        base = self._expand(self._https if scheme == "https" else self._http, values, ula)
        placed = self._placed
        google: list[str] = []
        for code in range(len(_PARAM_NAMES)):
            if code in placed:
                continue
            if code == _ULA:
                google.extend(["google_ula=" + entry for entry in ula])
            else:
                value = values[code]
                if value is not None:
                    google.append(_APPEND_PREFIXES[code] + value)
        if extras:
            encoded = _encode_extras(extras)
            pieces = encoded + google if extras_first else google + encoded
        else:
            pieces = google
        if not pieces:
            return base
        return base + self._separator(base) + "&".join(pieces)

    @staticmethod
    def _expand(parts: tuple[_Part, ...], values: list[str | None], ula: list[str]) -> str:
        out: list[str] = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            code, pair = part
            if code == _ULA:
                if pair:
                    out.extend(["&google_ula=" + entry for entry in ula])
                elif ula:
                    out.append("&google_ula=".join(ula))
                continue
            value = values[code]
            if value is not None:
                out.append(_PAIR_PREFIXES[code] + value if pair else value)
        return "".join(out)

    def __repr__(self) -> str:
        return f"RedirectTemplate.compile({self._url!r})"
