"""``/match``'s common case answered from the RSGI scope (``web/buyer/direct_match``,
``Matcher.redirect_common``) against the general path (``BuyerRoutes.match``): for generated
redirects (valid, malformed, percent-encoded or repeated ``google_gid`` and ``google_cver``,
errors, ``google_hm``, privacy parameters, other parameters), cookies (a uid, the one already
paired, none, garbage, ``OPT_OUT``, oversized) and ``Sec-GPC``, both answer the same bytes,
count the same (the buyer's counters, the policy's answers, the responses) and leave the same
match table, for both layouts (``keys``, ``buckets``) and both answers (GIF, 204).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cookiematch.roots.buyer as buyer_root
from cookiematch.buyer.ids import format_uid
from cookiematch.buyer.matchtable import MatchTable
from cookiematch.config import load_config
from cookiematch.privacy.policy import PrivacyPolicy
from cookiematch.protocol.cookies import OPT_OUT_VALUE
from cookiematch.roots.buyer import BuyerServer
from cookiematch.web.buyer.direct_match import read_match_query
from cookiematch.web.http import Headers
from cookiematch.web.http_metrics import RESPONSES
from cookiematch.web.rsgi import RSGIAdapter

from conftest import free_port
from support.direct_paths import Proto, Scope, fresh_metrics

NID = "dsp"
NEW_UID = bytes(range(16))  # what either path draws for a browser without a uid
SEED_GID = "CAESEHx3WrLZqC9kS8ZQ3pd2dQg"  # paired with SEED_UID before each answer
SEED_UID = b"\x01" * 16
UIDS = [format_uid(SEED_UID), format_uid(b"\x02" * 16), format_uid(b"\x03" * 16)]
GIDS = [SEED_GID, "CAESEJ5Lp0zSbSMJB_Z6VVjGmxg", "dGhpcyBpcyBhbiBleGFtGxl", "A", "ab-_"]
BAD_GIDS = ["", "A" * 65, "ab=", "a b", "ab%2B", "A+B", "é", "abcde"]
CVERS = ["1", "0", "4294967295", "4294967296", "", "x", "01", "1.0", "-1", "%31"]


def match_scope(method: str, query: str, headers: Headers) -> Scope:
    """A ``/match`` request's scope."""
    return Scope(method, query, headers, path="/match")


class InProcessBuyer:
    """A buyer App in this process answering ``/match`` through the RSGI adapter by either
    path, with what each answer counted and left in the match table."""

    def __init__(self, config: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = BuyerServer(load_config(config))
        self.app = self.server.app
        self.adapter = RSGIAdapter(self.app)
        self.loop.run_until_complete(self.app.startup())
        self.route = self.app.routes["/match"]
        assert self.route.direct is not None
        self.general = dataclasses.replace(self.route, direct=None)
        matcher = self.server.matcher
        assert matcher is not None
        self.table: MatchTable = matcher.table

    def close(self) -> None:
        self.loop.run_until_complete(self.app.shutdown())
        self.loop.close()

    def snapshot(self) -> dict[str, Any]:
        policy = self.server.policy
        assert isinstance(policy, PrivacyPolicy)
        responses = {labels: RESPONSES.value(labels) for labels in RESPONSES.labelled()}
        return {
            "stats": self.server.stats.snapshot(),
            "policy": dict(policy.counts),
            "responses": responses,
        }

    async def table_state(self) -> list[Any]:
        """Everything the table holds, then emptied and seeded with SEED_GID <-> SEED_UID."""
        store = self.server.admin
        prefix = f"bm:{NID}:"
        found: list[Any] = [
            (key, timeless(key, value))
            async for key, value in store.scan(prefix)
            if not key.endswith("meta")
        ]
        found += [
            (key, {name: timeless(key, value) for name, (value, _) in fields.items()})
            async for key, fields in store.scan_maps(prefix)
        ]
        for key, _ in found:
            await store.delete(key)
        await self.table.record(SEED_GID, SEED_UID, 1)
        return sorted(found, key=repr)

    def answer(self, scope: Scope, *, direct: bool) -> tuple[Any, ...]:
        self.loop.run_until_complete(self.table_state())
        self.app.routes["/match"] = self.route if direct else self.general
        try:
            before = self.snapshot()
            proto = Proto()
            self.loop.run_until_complete(self.adapter(scope, proto))
            after = self.snapshot()
        finally:
            self.app.routes["/match"] = self.route
        state = self.loop.run_until_complete(self.table_state())
        return proto.answer, changes(before, after), state


def timeless(key: str, value: bytes) -> bytes:
    """A stored entry without its match time (the two paths may answer a second apart)."""
    return value[:-4] if f"bm:{NID}:g:" in key else value[:5] + value[9:]


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("policy", "responses"):
        old = before[name]
        out[name] = {k: v - old.get(k, 0) for k, v in after[name].items() if v != old.get(k, 0)}
    out["stats"] = {
        (event, label): count - before["stats"][event].get(label, 0)
        for event, labels in after["stats"].items()
        for label, count in labels.items()
        if count != before["stats"][event].get(label, 0)
    }
    return out


VARIANTS = {
    "keys-gif": 'match_table_layout = "keys"\n',
    "buckets-204": 'match_table_layout = "buckets"\nmatch_table_expected_entries = 6400\n'
    'response = "204"\n',
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def buyer(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessBuyer]:
    directory = tmp_path_factory.mktemp("direct-match")
    config = directory / "buyer.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{directory / "buyer.db"}"\n\n'
        f'[buyer]\nlisten = "127.0.0.1:{free_port()}"\nnid = "{NID}"\n'
        'exchange_url = "http://exchange.test/pixel"\nstore_deadline_ms = 9000\n'
        "admin_store_deadline_ms = 9000\n" + VARIANTS[request.param]
    )
    patch = pytest.MonkeyPatch()
    patch.setattr(buyer_root, "new_uid", lambda: NEW_UID)
    fresh_metrics()
    inproc = InProcessBuyer(config)
    yield inproc
    inproc.close()
    patch.undo()


@st.composite
def match_scopes(draw: st.DrawFn) -> Scope:
    common = draw(st.booleans())
    gid = draw(st.sampled_from(GIDS if common else GIDS + BAD_GIDS))
    cver = draw(st.sampled_from(CVERS[:3] if common else CVERS))
    pairs = [f"google_gid={gid}", f"google_cver={cver}"]
    if not common:
        extra = draw(
            st.lists(
                st.sampled_from(
                    [
                        "google_error=1", "google_error=5", "google_hm=2", "gdpr=1",
                        "gdpr_consent=xyz", "us_privacy=1YYN", "gpp_sid=7", "foo=bar",
                        "google_gid=CAESEJ5Lp0zSbSMJB_Z6VVjGmxg", "google_cver=2", "", "%zz",
                        "google_push=abc",
                    ]
                ),
                max_size=3,
            )
        )  # fmt: skip
        pairs += extra
        if draw(st.integers(0, 4)) == 0:
            pairs = [pair for pair in pairs if not pair.startswith(draw(st.sampled_from(
                ["google_gid", "google_cver"])))]  # fmt: skip
    pairs = draw(st.permutations(pairs))
    cookie = draw(
        st.sampled_from(
            [
                None, f"buyer_uid={UIDS[0]}", f"buyer_uid={UIDS[1]}",
                f"_ga=1; buyer_uid={UIDS[2]}; x=y", "buyer_uid=garbage", "other=1",
                f'buyer_uid="{UIDS[0]}"',
            ]
            + ([] if common else [f"buyer_uid={OPT_OUT_VALUE}", "x=" + "a" * 9000])
        )
    )  # fmt: skip
    headers = [("host", "buyer.test")] + ([] if cookie is None else [("cookie", cookie)])
    if not common and draw(st.integers(0, 5)) == 0:
        headers.append(("sec-gpc", draw(st.sampled_from(["1", "0"]))))
    method = draw(st.sampled_from(["GET", "GET", "HEAD"]))
    return match_scope(method, "&".join(pairs), Headers(headers))


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scope=match_scopes())
def test_both_paths_answer_count_and_store_alike(buyer: InProcessBuyer, scope: Scope) -> None:
    flat = buyer.answer(scope, direct=True)
    general = buyer.answer(scope, direct=False)
    assert flat == general, (scope.query_string, scope.headers.get("cookie"))


def test_the_common_case_is_taken_and_edge_cases_are_not(buyer: InProcessBuyer) -> None:
    """The flat path answers the common case (a Pending) and leaves everything else to the
    handler (None, nothing done)."""
    direct = buyer.route.direct
    assert direct is not None
    cookie = Headers([("cookie", f"buyer_uid={format_uid(SEED_UID)}")])
    taken = direct(match_scope("GET", f"google_gid={SEED_GID}&google_cver=1", cookie))
    assert taken is not None
    buyer.loop.run_until_complete(taken)  # type: ignore[arg-type]
    for query in (
        f"google_gid={SEED_GID}&google_cver=1&gdpr=0",
        f"google_gid={SEED_GID}",
        f"google_cver=1&google_gid={SEED_GID}&google_error=1",
        f"google_gid={SEED_GID}%41&google_cver=1",
        "google_gid=a+b&google_cver=1",
        f"google_gid={SEED_GID}&google_cver=4294967296",
    ):
        assert direct(match_scope("GET", query, cookie)) is None, query
    query = f"google_cver=7&google_gid={SEED_GID}"
    assert read_match_query(query) == (SEED_GID, 7)
    for headers in (
        Headers([("cookie", f"buyer_uid={OPT_OUT_VALUE}")]),
        Headers([("cookie", "a=" + "b" * 9000)]),
        Headers([("sec-gpc", "1")]),
    ):
        assert direct(match_scope("GET", query, headers)) is None
