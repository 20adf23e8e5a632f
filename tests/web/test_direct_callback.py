"""``/callback/<partner>``'s common case answered from the RSGI scope
(``web/dmp/direct_callback``) against the general path (``DmpRoutes.callback``): for generated
callbacks (known, unknown and malformed partners, plain, sealed, empty, macro, percent-encoded
or repeated ``uid``, clients, the cookie test marker, privacy parameters, other parameters),
cookies (a DMP ID, none, garbage, ``OPT_OUT``, oversized) and ``Sec-GPC``, both answer the same
bytes, count the same (the funnel, the policy's answers, the responses) and leave the same
store (the match both ways, a superseded partner ID's reverse entry gone, the change marks,
the records that waited for the partner ID applied), under three configurations: change marks
for an analytics engine, no engine (traits in the key-value store), and GDPR by default (the
flat path never taken).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cookiematch.roots.dmp as dmp_root
from cookiematch.config import load_config
from cookiematch.dmp.ingest.records import Record
from cookiematch.dmp.model import IdFormat, Partner
from cookiematch.dmp.partner_ids import seal
from cookiematch.privacy.policy import PrivacyPolicy
from cookiematch.protocol.cookies import OPT_OUT_VALUE, format_browser_id
from cookiematch.protocol.query import QueryParam, parse_query
from cookiematch.protocol.templates import SyncTemplate
from cookiematch.roots.dmp import DmpServer
from cookiematch.web.dmp.direct_callback import read_callback_query
from cookiematch.web.http import Headers
from cookiematch.web.http_metrics import RESPONSES
from cookiematch.web.rsgi import RSGIAdapter

from conftest import free_port
from support.direct_paths import Proto, Scope, fresh_metrics

KEY = b"k" * 32
NEW_UID = format_browser_id(bytes(range(16)))  # what either path draws for a new browser
BROWSERS = [format_browser_id(bytes([i]) * 16) for i in (1, 2, 3)]
SEEDED = ("analytics", BROWSERS[0], "A-old")  # (partner, DMP ID, partner ID), stored first
WAITING = ("analytics", "A-1")  # a record waits for this partner ID before each answer
PARTNER_UIDS = ["A-1", "A-old", "A-2", "x.y~z_9", "", "MACRO"]
BAD_UIDS = ["a b", "a%20b", "a+b", "[EID]", "é", "a=b", "%zz"]


def callback_scope(method: str, path: str, query: str, headers: Headers) -> Scope:
    """A ``/callback/<partner>`` request's scope."""
    return Scope(method, query, headers, path=path)


class InProcessDmp:
    """A DMP App in this process answering ``/callback/`` through the RSGI adapter by either
    path, with what each answer counted and left in the store."""

    def __init__(self, config: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = DmpServer(load_config(config))
        self.app = self.server.app
        self.adapter = RSGIAdapter(self.app)
        self.loop.run_until_complete(self.app.startup())
        self.route = self.app.match("/callback/analytics")
        assert self.route is not None and self.route.direct is not None
        self.general = dataclasses.replace(self.route, direct=None)

    def close(self) -> None:
        self.loop.run_until_complete(self.app.shutdown())
        self.loop.close()

    def snapshot(self) -> dict[str, Any]:
        policy = self.server.policy
        assert isinstance(policy, PrivacyPolicy)
        responses = {labels: RESPONSES.value(labels) for labels in RESPONSES.labelled()}
        funnel = msgspec.to_builtins(self.server.service.funnel.snapshot())
        funnel.pop("seen", None)
        return {
            "funnel": funnel,
            "policy": dict(policy.counts),
            "responses": responses,
        }

    async def state(self) -> list[Any]:
        """Everything the DMP's keys hold (times left out), then emptied and seeded."""
        store = self.server.admin
        found: list[Any] = [
            (key, timeless(value)) async for key, value in store.scan("dmp") if "funnel" not in key
        ]
        marked: set[str] = set()
        async for key, fields in store.scan_maps("dmp"):
            if key.startswith("dmpc:"):  # a change mark's map: named by the time of the write
                marked.update(fields)
                found.append(("dmpc:", key))
            elif "funnel" not in key:
                found.append((key, {name: timeless(value) for name, (value, _) in fields.items()}))
        for key, _ in found:
            if key != "dmpc:":
                await store.delete(key)
        for key in [key for tag, key in found if tag == "dmpc:"]:
            await store.delete(key)
        service = self.server.service
        await service.matches.record(*SEEDED, 1.0)
        await self.server.core.ingestor.pending.add(
            WAITING[0], [Record(WAITING[1], {"tier": "gold"})]
        )
        return [*sorted((item for item in found if item[0] != "dmpc:"), key=repr), sorted(marked)]

    def answer(self, scope: Scope, *, direct: bool) -> tuple[Any, ...]:
        self.loop.run_until_complete(self.state())
        self._use(self.route if direct else self.general)
        try:
            before = self.snapshot()
            proto = Proto()
            self.loop.run_until_complete(self.adapter(scope, proto))
            after = self.snapshot()
        finally:
            self._use(self.route)
        return proto.answer, changes(before, after), self.loop.run_until_complete(self.state())

    def _use(self, route: Any) -> None:
        prefixes = self.app.prefix_routes
        prefixes[[r.path for r in prefixes].index(route.path)] = route


def timeless(value: bytes) -> Any:
    """A stored entry without its time: a match's ``[id, at]``, the seeded record's."""
    try:
        decoded = msgspec.json.decode(value)
    except msgspec.DecodeError:
        try:
            decoded = msgspec.msgpack.decode(value)
        except msgspec.DecodeError:
            return value
    if isinstance(decoded, list) and len(decoded) >= 2 and isinstance(decoded[1], float):
        return [decoded[0], *decoded[2:]]
    if isinstance(decoded, list) and decoded and isinstance(decoded[0], float):
        return decoded[1:]
    return decoded


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("policy", "responses"):
        old = before[name]
        out[name] = {k: v - old.get(k, 0) for k, v in after[name].items() if v != old.get(k, 0)}
    out["funnel"] = {
        scope: {
            key: {
                stage: count - before["funnel"][scope].get(key, {}).get(stage, 0)
                for stage, count in stages.items()
                if count != before["funnel"][scope].get(key, {}).get(stage, 0)
            }
            if isinstance(stages, dict)
            else stages - before["funnel"][scope].get(key, 0)
            for key, stages in counts.items()
        }
        for scope, counts in after["funnel"].items()
    }
    return out


PARTNERS = f"""
[[dmp.clients]]
id = "shop"
allowed_origins = ["http://shop.test"]

[[dmp.partners]]
id = "analytics"
sync_url = "https://analytics.example/sync?redir=${{CALLBACK_URL}}"
gvl_vendor_id = 755

[[dmp.partners]]
id = "email"
sync_url = "https://e.example/?r=${{CALLBACK_URL}}"
uid_macro = "[EID]"
id_format = "signed"
id_key = "{base64.b64encode(KEY).decode()}"

[[dmp.partners]]
id = "orders"
sync_url = "https://oms.example/px?r=${{CALLBACK_URL}}"
uid_macro = "MACRO"
initiates_sync = true
"""

VARIANTS = {
    "engine": "",
    "off": '\n[dmp.analytics]\nengine = "off"\n',
    "gdpr-off": '\n[dmp.analytics]\nengine = "off"\n\n[privacy]\ngdpr_default = true\n',
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def dmp(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessDmp]:
    directory = tmp_path_factory.mktemp("direct-callback")
    config = directory / "dmp.toml"
    variant = VARIANTS[request.param]
    privacy = ""
    if "[privacy]" in variant:
        variant, privacy = variant.split("\n[privacy]")
        privacy = "[privacy]" + privacy
    config.write_text(
        f'{privacy}\n[store]\nurl = "sqlite:///{directory / "dmp.db"}"\n\n'
        f'[dmp]\nlisten = "127.0.0.1:{free_port()}"\npublic_url = "https://dmp.test"\n'
        "store_deadline_ms = 9000\nadmin_store_deadline_ms = 9000\n" + PARTNERS + variant
    )
    patch = pytest.MonkeyPatch()
    patch.setattr(dmp_root, "new_dmp_uid", lambda: NEW_UID)
    fresh_metrics()
    inproc = InProcessDmp(config)
    yield inproc
    inproc.close()
    patch.undo()


EMAIL = Partner("email", SyncTemplate.compile("https://e.example/?r=${CALLBACK_URL}"),
                id_format=IdFormat.SIGNED, id_key=KEY)  # fmt: skip


def sealed(uid: str) -> str:
    """``uid`` as the ``email`` partner sends it (its signed format)."""
    return seal(EMAIL, uid, time.time())


@st.composite
def callback_scopes(draw: st.DrawFn) -> Scope:
    common = draw(st.booleans())
    partner = draw(
        st.sampled_from(
            ["analytics", "email", "orders"]
            if common
            else ["analytics", "nope", "orders", "a b", ""]
        )
    )
    uid = draw(st.sampled_from(PARTNER_UIDS if common else PARTNER_UIDS + BAD_UIDS))
    if partner == "email" and draw(st.booleans()):
        uid = sealed(uid or "E-1")
    pairs = [f"uid={uid}"]
    if draw(st.booleans()):
        pairs.append(f"c={draw(st.sampled_from(['shop', 'other', '']))}")
    if not common:
        pairs += draw(
            st.lists(
                st.sampled_from(
                    [
                        "dmp_tc=1", "gdpr=1", "gdpr=0", "gdpr_consent=xyz", "us_privacy=1YYN",
                        "foo=bar", "uid=A-2", "c=shop", "", "%zz", "uid", "c=a=b",
                    ]
                ),
                max_size=3,
            )
        )  # fmt: skip
        if draw(st.integers(0, 4)) == 0:
            pairs = pairs[1:]
    pairs = draw(st.permutations(pairs))
    cookie = draw(
        st.sampled_from(
            [f"dmp_id={BROWSERS[0]}", f"dmp_id={BROWSERS[1]}", f"_ga=1; dmp_id={BROWSERS[2]}; x=y"]
            + (
                []
                if common
                else [
                    None,
                    "dmp_id=garbage",
                    "other=1",
                    f"dmp_id={OPT_OUT_VALUE}",
                    "x=" + "a" * 9000,
                ]
            )
        )
    )
    headers = [("host", "dmp.test")] + ([] if cookie is None else [("cookie", cookie)])
    if not common and draw(st.integers(0, 5)) == 0:
        headers.append(("sec-gpc", draw(st.sampled_from(["1", "0"]))))
    method = draw(st.sampled_from(["GET", "GET", "HEAD"]))
    return callback_scope(method, f"/callback/{partner}", "&".join(pairs), Headers(headers))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scope=callback_scopes())
def test_both_paths_answer_count_and_store_alike(dmp: InProcessDmp, scope: Scope) -> None:
    flat = dmp.answer(scope, direct=True)
    general = dmp.answer(scope, direct=False)
    assert flat == general, (scope.path, scope.query_string, scope.headers.get("cookie"))


def test_the_common_case_is_taken_and_edge_cases_are_not(dmp: InProcessDmp) -> None:
    """The flat path answers the common case (a Pending, when the policy lets a request that
    says nothing keep the cookie and sync) and leaves everything else to the handler (None,
    nothing done)."""
    direct = dmp.route.direct
    assert direct is not None
    cookie = Headers([("cookie", f"dmp_id={BROWSERS[1]}")])
    taken = direct(callback_scope("GET", "/callback/analytics", "c=shop&uid=A-1", cookie))
    if dmp.server.policy.settings.gdpr_default:  # type: ignore[union-attr]
        assert taken is None
        return
    assert taken is not None
    dmp.loop.run_until_complete(taken)  # type: ignore[arg-type]
    signed = direct(callback_scope("GET", "/callback/email", f"uid={sealed('E-1')}", cookie))
    assert signed is not None
    dmp.loop.run_until_complete(signed)  # type: ignore[arg-type]
    for path, query in (
        ("/callback/analytics", "uid=A-1&dmp_tc=1"),
        ("/callback/analytics", "uid=A%2D1"),
        ("/callback/analytics", "uid=A-1&gdpr=0"),
        ("/callback/analytics", "uid=A-1&uid=A-2"),
        ("/callback/analytics", "c=shop"),
        ("/callback/analytics", "uid="),
        ("/callback/orders", "uid=MACRO"),  # the macro left unreplaced
        ("/callback/email", "uid=E-1"),  # not signed
        ("/callback/email", f"uid={sealed('E-1')[:-2]}xx"),  # forged
        ("/callback/nope", "uid=A-1"),
    ):
        assert direct(callback_scope("GET", path, query, cookie)) is None, (path, query)
    assert read_callback_query("uid=A-1") == ("A-1", None)
    assert read_callback_query("c=shop&uid=A-1") == ("A-1", "shop")
    assert read_callback_query("uid=&c=") == ("", "")
    for headers in (
        Headers([]),
        Headers([("cookie", f"dmp_id={OPT_OUT_VALUE}")]),
        Headers([("cookie", "dmp_id=garbage")]),
        Headers([("cookie", "a=" + "b" * 9000)]),
        Headers([("cookie", f"dmp_id={BROWSERS[1]}"), ("sec-gpc", "1")]),
    ):
        assert direct(callback_scope("GET", "/callback/analytics", "uid=A-1", headers)) is None


@settings(max_examples=2000, deadline=None)
@given(query=st.text(alphabet="uidc=&a.", max_size=16))
def test_the_flat_reading_of_a_query_is_the_general_one(query: str) -> None:
    """Whatever the flat path reads from a query, the general parser reads the same pairs, and
    no other (``c=b&uid=a&x`` is not read as the uid ``a&x``)."""
    for shape in (query, "c=b&uid=a&x", "c=b&uid=a&", "c=b&uid=a&c", "uid=a&c=b&x"):
        read = read_callback_query(shape)
        if read is None:
            continue
        uid, client = read
        expected = [QueryParam("uid", uid)] + ([] if client is None else [QueryParam("c", client)])
        assert sorted(parse_query(shape), key=str) == sorted(expected, key=str), shape


def test_the_records_waiting_for_the_partner_id_are_applied(dmp: InProcessDmp) -> None:
    """The flat path's one store call reads the records that waited for the partner ID; they
    are applied and the waiting map is gone."""
    refused = dmp.server.policy.settings.gdpr_default  # type: ignore[union-attr]
    dmp.loop.run_until_complete(dmp.state())
    scope = callback_scope("GET", "/callback/analytics", "uid=A-1&c=shop", Headers(
        [("cookie", f"dmp_id={BROWSERS[1]}")]))  # fmt: skip
    before = dmp.snapshot()
    proto = Proto()
    dmp.loop.run_until_complete(dmp.adapter(scope, proto))
    assert proto.answer is not None and proto.answer[0] == (400 if refused else 200)
    funnel = changes(before, dmp.snapshot())["funnel"]
    state = dict(item for item in dmp.loop.run_until_complete(dmp.state())[:-1])
    if refused:  # GDPR by default: nothing stored, the record still waits
        assert "resolved" not in funnel["ingest"].get("analytics", {})
        assert any(key.startswith("dmp:pend:") for key in state)
        return
    assert funnel["ingest"]["analytics"]["resolved"] == 1
    assert not any(key.startswith("dmp:pend:") for key in state)


def test_partners_replaced_are_read_anew(dmp: InProcessDmp) -> None:
    """The flat path remembers each partner's readiness by the partner object served: once
    the partners are replaced (the admin API), it reads the new ones, not what it held."""
    service = dmp.server.service  # type: ignore[union-attr]
    direct = dmp.route.direct
    assert direct is not None
    cookie = Headers([("cookie", f"dmp_id={BROWSERS[1]}")])
    before = list(service.partners.values())
    analytics = service.partners["analytics"]

    def taken(query: str) -> bool:
        pending = direct(callback_scope("GET", "/callback/analytics", query, cookie))
        if pending is None:
            return False
        dmp.loop.run_until_complete(pending)  # type: ignore[arg-type]
        return True

    ready = not dmp.server.policy.settings.gdpr_default  # type: ignore[union-attr]
    assert taken("uid=OLD-1") is ready
    try:
        renamed = dataclasses.replace(analytics, uid_macro="OLD-2")
        service.replace_partners([renamed if p is analytics else p for p in before])
        assert taken("uid=OLD-2") is False  # the new partner's macro, left unreplaced
        assert taken("uid=OLD-3") is ready
        service.replace_partners([p for p in before if p is not analytics])
        assert taken("uid=OLD-4") is False  # a partner no longer served
    finally:
        service.replace_partners(before)
    assert taken("uid=OLD-5") is ready
