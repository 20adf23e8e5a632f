"""The rules the kit checks, each a ``Check`` whose verdict says what to fix."""

from __future__ import annotations

import re
import struct
from urllib.parse import urlsplit

from cookiematch.conformance.case import Answer, Check, Verdict
from cookiematch.errors import QueryError
from cookiematch.protocol.query import QueryParam, encode_component, parse_query

_ULA = re.compile(r"[0-9]+(,[0-9]+)?")
_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
MAX_HOSTED_BYTES = 24  # the seed: "decoded into more than 24 bytes" is an error


def _image_size(body: bytes) -> tuple[int, int] | None:
    """Width and height of a GIF or PNG body, or None."""
    if body[:6] in (b"GIF87a", b"GIF89a") and len(body) >= 10:
        width, height = struct.unpack("<HH", body[6:10])
        return width, height
    if body[:8] == b"\x89PNG\r\n\x1a\n" and len(body) >= 24:
        width, height = struct.unpack(">II", body[16:24])
        return width, height
    return None


def _pixel(answer: Answer) -> Verdict:
    if answer.status == 204:
        return None
    if answer.status != 200:
        return (
            f"answered {answer.status}: serve a 1x1 image (200) or 204 No Content for every "
            "redirect from the exchange, whatever its parameters"
        )
    kind = answer.header("content-type") or ""
    if not kind.startswith("image/"):
        return f"answered 200 with Content-Type {kind or '(none)'!r}: serve a 1x1 image"
    size = _image_size(answer.body)
    if size != (1, 1):
        shown = "not a GIF or PNG" if size is None else f"{size[0]}x{size[1]}"
        return f"the image is {shown}: serve a 1x1 invisible pixel (GIF or PNG)"
    return None


PIXEL = Check("a 1x1 image or 204", _pixel)


def _no_5xx(answer: Answer) -> Verdict:
    if answer.status >= 500:
        return f"answered {answer.status}: a browser-facing endpoint never answers 5xx"
    return None


NO_5XX = Check("never 5xx", _no_5xx)


def quick(limit_seconds: float) -> Check:
    """The answer came within ``limit_seconds`` ("in a timely fashion")."""

    def judge(answer: Answer) -> Verdict:
        if answer.seconds > limit_seconds:
            return (
                f"answered in {answer.seconds * 1000:.0f} ms, over the {limit_seconds * 1000:.0f}"
                " ms limit: answer before any slow work (write the match off the request path)"
            )
        return None

    return Check(f"answers within {limit_seconds * 1000:.0f} ms", judge)


def _cookie_names(answer: Answer) -> list[str]:
    return [c.split("=", 1)[0].strip() for c in answer.all("set-cookie")]


def _sets_cookie(answer: Answer) -> Verdict:
    if not _cookie_names(answer):
        return (
            "no Set-Cookie: a browser without the buyer's cookie gets one, stored against its "
            "google_gid in the match table"
        )
    return None


SETS_COOKIE = Check("sets the buyer's cookie", _sets_cookie)


def _deletes(cookie: str) -> bool:
    """A Set-Cookie that removes the cookie (``Max-Age=0``, or an empty value)."""
    first, *attributes = cookie.lower().replace(" ", "").split(";")
    return first.endswith("=") or "max-age=0" in attributes


def _no_cookie(answer: Answer) -> Verdict:
    names = [c.split("=", 1)[0].strip() for c in answer.all("set-cookie") if not _deletes(c)]
    if names:
        return (
            f"set cookie(s) {', '.join(names)} on google_error=1: the user opted out of "
            "tracking, assign no cookie ID and write no match"
        )
    return None


NO_NEW_COOKIE = Check("assigns or refreshes no cookie ID (deleting it is fine)", _no_cookie)


def _third_party_cookie(answer: Answer) -> Verdict:
    for cookie in answer.all("set-cookie"):
        attributes = cookie.lower().replace(" ", "").split(";")[1:]
        if "samesite=none" not in attributes or "secure" not in attributes:
            name = cookie.split("=", 1)[0]
            return (
                f"cookie {name} lacks 'SameSite=None; Secure': browsers drop it in the "
                "exchange's cross-site redirect"
            )
    return None


THIRD_PARTY_COOKIE = Check("cookie usable cross-site", _third_party_cookie)


def _query_of(url: str) -> tuple[QueryParam, ...] | str:
    try:
        return parse_query(urlsplit(url).query)
    except QueryError as exc:
        return f"its query does not parse ({exc})"


def _raw_values(url: str, name: str) -> list[str]:
    query = urlsplit(url).query
    return [p.partition("=")[2] for p in query.split("&") if p.partition("=")[0] == name]


def push_back(exchange_url: str | None, push: str, nid: str | None) -> Check:
    """A 302 back to the exchange with ``google_nid``, ``google_push`` identical to the one
    sent (decoded value, and raw bytes when sent unencoded), well-formed optional
    ``google_ula``/``google_hm``, and no ``google_cm``."""

    def judge(answer: Answer) -> Verdict:
        if answer.status not in (302, 303, 307):
            return (
                f"answered {answer.status}: on a pixel-matching request, redirect (302) "
                "back to the exchange with google_nid and the same google_push"
            )
        location = answer.header("location") or ""
        if exchange_url and not _at_endpoint(location, exchange_url):
            return f"redirected to {location!r}: redirect back to the exchange ({exchange_url})"
        query = _query_of(location)
        if isinstance(query, str):
            return f"the redirect {location!r}: {query}"
        values: dict[str, list[str | None]] = {}
        for p in query:
            values.setdefault(p.name, []).append(p.value)
        nids = values.get("google_nid", [])
        if len(nids) != 1 or not nids[0]:
            return "the redirect back needs exactly one google_nid (the buyer's network ID)"
        if nid is not None and nids[0] != nid:
            return f"the redirect back carries google_nid={nids[0]}, expected {nid}"
        returned = values.get("google_push", [])
        if len(returned) != 1:
            return (
                f"the redirect back has {len(returned)} google_push parameters: copy the one "
                "received, once"
            )
        if returned[0] != push:
            return (
                f"google_push came back as {returned[0]!r}, sent {push!r}: pass the value "
                "through unchanged (error 5 at the exchange)"
            )
        if encode_component(push) == push and _raw_values(location, "google_push") != [push]:
            return "google_push was re-encoded: copy the bytes received"
        if "google_cm" in values:
            return "the redirect back has google_cm besides google_push: error 4 (conflict)"
        for ula in values.get("google_ula", []):
            if ula is None or _ULA.fullmatch(ula) is None:
                return f"google_ula={ula!r} is not userlistid[,timestamp]"
        for hm in values.get("google_hm", []):
            if hm is None or not _hosted_ok(hm):
                return (
                    f"google_hm={hm!r} is not URL-safe base64 of at most {MAX_HOSTED_BYTES} bytes"
                )
        return None

    return Check("302 back to the exchange, google_push identical", judge)


def _hosted_ok(value: str) -> bool:
    if _B64URL.fullmatch(value) is None:
        return False
    data = value.rstrip("=")
    if len(data) % 4 == 1:
        return False
    return len(data) * 3 // 4 <= MAX_HOSTED_BYTES


def _at_endpoint(location: str, base: str) -> bool:
    """Whether ``location`` is ``base`` or under it: the same scheme and host, and its path
    equal to the base's or below it (a prefix of the text is not enough: ``…/pixelfoo`` and
    ``cm.exchange.example.other.net`` are elsewhere)."""
    there, here = urlsplit(location), urlsplit(base)
    if (there.scheme.lower(), there.netloc.lower()) != (here.scheme.lower(), here.netloc.lower()):
        return False
    root = here.path or "/"
    return there.path == root or there.path.startswith(root.rstrip("/") + "/")
