"""The kit's rules on hand-made answers: the edges of what each accepts."""

from __future__ import annotations

import struct
import zlib

import pytest

from cookiematch.conformance import checks
from cookiematch.conformance.case import Answer
from cookiematch.protocol.pixel import TRANSPARENT_GIF


def answer(status: int = 200, *headers: tuple[str, str], body: bytes = b"") -> Answer:
    return Answer(status, headers, body, 0.01)


def png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)))  # fmt: skip


@pytest.mark.parametrize(
    ("given", "verdict"),
    [
        (answer(204), None),
        (answer(200, ("content-type", "image/gif"), body=TRANSPARENT_GIF), None),
        (answer(200, ("content-type", "image/png"), body=png(1, 1)), None),
        (answer(200, ("content-type", "image/png"), body=png(1, 2)), "the image is 1x2"),
        (answer(200, ("content-type", "image/gif"), body=b"nope"), "not a GIF or PNG"),
        (answer(200, body=TRANSPARENT_GIF), "Content-Type '(none)'"),
        (answer(302, ("location", "http://x/")), "answered 302"),
    ],
)
def test_pixel(given: Answer, verdict: str | None) -> None:
    got = checks.PIXEL.judge(given)
    assert got is None if verdict is None else verdict in (got or "")


@pytest.mark.parametrize(
    ("cookie", "fails"),
    [
        ("uid=abc; Path=/", True),
        ("uid=; Max-Age=0", False),
        ("uid=abc; Max-Age=0; Path=/", False),
        ("uid=", False),
    ],
)
def test_an_opt_out_may_delete_the_cookie_but_not_set_one(cookie: str, fails: bool) -> None:
    verdict = checks.NO_NEW_COOKIE.judge(answer(200, ("set-cookie", cookie)))
    assert (verdict is not None) is fails


@pytest.mark.parametrize(
    ("extra", "verdict"),
    [
        ("", None),
        ("&google_ula=12345&google_ula=45678,1700000000", None),
        ("&google_hm=Q29va2llIG51bWJlciAxIQ%3D%3D", None),
        ("&google_hm=" + "QUJD" * 9, "at most 24 bytes"),
        ("&google_ula=12a", "is not userlistid[,timestamp]"),
        ("&google_cm", "error 4"),
        ("&google_push=P", "2 google_push parameters"),
    ],
)
def test_push_back(extra: str, verdict: str | None) -> None:
    check = checks.push_back("https://x.example/pixel", "P", "dsp")
    location = "https://x.example/pixel?google_nid=dsp&google_push=P" + extra
    got = check.judge(answer(302, ("location", location)))
    assert got is None if verdict is None else verdict in (got or "")


@pytest.mark.parametrize(
    ("location", "elsewhere"),
    [
        ("https://x.example/pixel?google_nid=dsp&google_push=P", False),
        ("https://X.EXAMPLE/pixel?google_nid=dsp&google_push=P", False),
        ("https://x.example/pixel/sub?google_nid=dsp&google_push=P", False),
        ("https://x.example.other.net/pixel?google_nid=dsp&google_push=P", True),
        ("https://x.example/pixelfoo?google_nid=dsp&google_push=P", True),
        ("http://x.example/pixel?google_nid=dsp&google_push=P", True),
    ],
)
def test_push_back_goes_to_the_exchange_not_a_look_alike(location: str, elsewhere: bool) -> None:
    check = checks.push_back("https://x.example/pixel", "P", "dsp")
    got = check.judge(answer(302, ("location", location)))
    assert (got is not None and "redirect back to the exchange" in got) is elsewhere
