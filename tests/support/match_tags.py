"""Match tags for the tests that compare two paths answering them (the flat Python path and
the general one: tests/web/test_direct_pixel.py; the edge and the server: tests/edge/): the
buyers (one per seed vector too), and hypothesis strategies for queries and Cookie headers."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from cookiematch.conformance import vectors
from cookiematch.protocol.common_tag import read_common_tag
from cookiematch.protocol.cookies import OPT_OUT_VALUE, format_browser_id
from cookiematch.protocol.matchtag import MAX_EXTRAS_BYTES

BUYERS = {
    "ad_network_xyz": "http://ad.network.com/pixel?id=",
    "bare": "https://bare.example",
    "macros": "http://user.buyer.com/cookies?w=0%%GOOGLE_PUSH_PAIR%%&x=1%%GOOGLE_GID_PAIR&y=2"
    "%%GOOGLE_CVER_PAIR%%&z=3%%GOOGLE_ERROR_PAIR%%",
    "placed": "https://placed.example/m/%%GOOGLE_GID%%?v=%%GOOGLE_CVER%%&gdpr=%%GDPR%%"
    "&c=%%GDPR_CONSENT%%&",
    "vendor": "http://vendor.example/cm",
}


def vector_cases() -> list[dict[str, Any]]:
    """The packaged redirect vectors whose match tag is the common case, answered by a gid."""
    found = []
    for case in vectors.load("redirects.json")["cases"]:
        tag = case["match_tag"]
        gid_only = set(case["response"]) == {"gid", "cver"}
        if tag and gid_only and read_common_tag(tag.partition("?")[2]) is not None:
            found.append(case)
    return found


BUYER_TABLES = (
    "".join(
        f'[[exchange.buyers]]\nnid = "{nid}"\nredirect_url = "{url}"\n'
        + ("gvl_vendor_id = 32\n" if nid == "vendor" else "")
        + ("hosted_match = true\n" if nid == "ad_network_xyz" else "")
        + "\n"
        for nid, url in BUYERS.items()
    )
    + (  # limited: the general path's (a rate no test reaches)
        '[[exchange.buyers]]\nnid = "limited"\nredirect_url = "http://l.example/"\n'
        "max_match_tags_per_second = 1e9\n\n"
    )
    + "".join(  # buyer v<i>: the redirect URL of the i-th seed vector
        f'[[exchange.buyers]]\nnid = "v{i}"\nredirect_url = "{case["redirect_url"]}"\n\n'
        for i, case in enumerate(vector_cases())
    )
)

ODD = "abcXYZ019 &=%+;#?/,~._-\"'<>\\é😀\t"
text = st.text(st.sampled_from(ODD), max_size=10)
printable = st.text(st.sampled_from(ODD.replace("\t", "")), max_size=10)


def encoded(value: str) -> str:
    return quote(value, safe="")


def query_value(raw: str, escape: bool) -> str:
    return encoded(raw) if escape else raw


@st.composite
def queries(draw: st.DrawFn, common: bool) -> str:
    """A match tag; ``common``: one that the direct path may answer (if its buyer may)."""
    nids = list(BUYERS) if common else [*BUYERS, "limited", "unknown", ""]
    pairs: list[str] = [f"google_nid={draw(st.sampled_from(nids))}"]
    if common or draw(st.integers(0, 9)):
        pairs.append(draw(st.sampled_from(["google_cm", "google_cm=", "google_cm=1"])))
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.integers(1 if common else 0, 9))
        if kind == 0:
            pairs.append(
                draw(
                    st.sampled_from(
                        [
                            "google_ula=12345", "google_hm=AAECAw", "google_push=x",
                            "google_tc=1", "google_sc", "google_no_sc", "google_nid=again",
                            "google_other=1", "gdpr=1", "gdpr=0", "us_privacy=1YYN",
                            "gpp_sid=2", "%67oogle_cm", "a=%zz", "a=%FF", "a=%0A",
                        ]
                    )
                )
            )  # fmt: skip
        elif kind == 1:  # sizes around the 1 KiB of extras
            pairs.append("big=" + "v" * draw(st.integers(MAX_EXTRAS_BYTES - 40, MAX_EXTRAS_BYTES)))
        else:
            escape = common or draw(st.booleans())
            chars = printable if common else text
            name = query_value(draw(chars.filter(bool)), escape) or "p"
            value = draw(st.none() | chars)
            pairs.append(name if value is None else f"{name}={query_value(value, escape)}")
    return "&".join(draw(st.permutations(pairs)))


browser_ids = st.binary(min_size=16, max_size=16).map(format_browser_id)
cookie_values = st.one_of(
    browser_ids,
    browser_ids.map(lambda v: f'"{v}"'),
    st.sampled_from([OPT_OUT_VALUE, "", "short", "AAAAAAAAAAAAAAAAAAAAAB", "x" * 22]),
)


@st.composite
def cookie_headers(draw: st.DrawFn, common: bool) -> list[tuple[str, str]]:
    if common:
        return [("cookie", f"_ga=GA1.2.3; cm_id={draw(browser_ids)}; lang=en")]
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return []
    if kind == 1:
        return [("cookie", "lang=en"), ("cookie", f"cm_id={draw(cookie_values)}")]
    if kind == 2:
        return [("cookie", "a=" + "x" * 8200 + f"; cm_id={draw(cookie_values)}")]
    before = draw(st.sampled_from(["", "_ga=GA1.2.3; ", "cm_id=first; "]))
    return [("cookie", f"{before}cm_id={draw(cookie_values)}; lang=en")]
