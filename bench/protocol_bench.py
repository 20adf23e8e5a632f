"""In-process cost of the match tag's protocol steps (µs per call, best of 5 runs).

.venv/bin/python bench/protocol_bench.py
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from cookiematch.protocol.matchtag import parse_match_tag
from cookiematch.protocol.query import parse_query
from cookiematch.protocol.redirect import RedirectTemplate, ResponseParams
from cookiematch.protocol.userid import UserIdCipher

CIPHER = UserIdCipher({1: bytes(32)})
PLAIN = RedirectTemplate.compile("https://ad.network.com/pixel?id=")
MACROS = RedirectTemplate.compile(
    "http://user.buyer.com/cookies?w=0%%GOOGLE_PUSH_PAIR%%&x=1%%GOOGLE_GID_PAIR"
    "&y=2%%GOOGLE_CVER_PAIR%%&z=3%%GOOGLE_ERROR_PAIR%%"
)
RAW = "google_nid=ad_network_xyz&google_cm&google_ula=12345&p1=v1&p2=v2"
BROWSER = bytes(range(16))


def full(template: RedirectTemplate = PLAIN) -> str:
    tag = parse_match_tag(parse_query(RAW))
    gid = CIPHER.encrypt(BROWSER, tag.nid)
    statuses = tuple((add.raw_id, 0) for add in tag.user_list_adds)
    response = ResponseParams(gid=gid, cver=1, user_lists=statuses)
    return template.render("https", response, tag.extras)


def main() -> None:
    tag = parse_match_tag(parse_query(RAW))
    response = ResponseParams(
        gid=CIPHER.encrypt(BROWSER, "ad_network_xyz"), cver=1, user_lists=(("12345", 0),)
    )
    cases: list[tuple[str, Callable[[], object]]] = [
        ("parse_query", lambda: parse_query(RAW)),
        ("parse_match_tag", lambda: parse_match_tag(tag.params)),
        ("encrypt", lambda: CIPHER.encrypt(BROWSER, "ad_network_xyz")),
        ("render", lambda: PLAIN.render("https", response, tag.extras)),
        ("render macros", lambda: MACROS.render("https", response, tag.extras)),
        ("full", full),
        ("full macros", lambda: full(MACROS)),
    ]
    print(full())
    runs = 100_000
    for name, call in cases:
        best = min(timeit.repeat(call, number=runs, repeat=5)) / runs * 1e6
        print(f"{name:16s} {best:6.2f} µs")


if __name__ == "__main__":
    main()
