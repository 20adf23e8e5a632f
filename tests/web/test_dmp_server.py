"""The DMP role against a real ``python -m cookiematch serve --config FILE --role dmp`` process."""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from cookiematch.dmp.matches import MatchTable
from cookiematch.dmp.model import IdFormat, Partner
from cookiematch.dmp.partner_ids import seal
from cookiematch.protocol.cookies import format_browser_id
from cookiematch.protocol.pixel import TRANSPARENT_GIF
from cookiematch.protocol.templates import SyncTemplate
from cookiematch.secret import MASK
from cookiematch.storage import open_store

from conftest import ServerProcess, free_port, load_then_kill
from support.configs import serve_argv
from support.eventually import eventually

TOKEN = "dmp-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEY = b"k" * 32
ORIGIN = "http://shop.localhost:8000"
EMAIL = Partner("email", SyncTemplate.compile("https://e.example/?r=${CALLBACK_URL}"),
                id_format=IdFormat.SIGNED, id_key=KEY)  # fmt: skip


def write_config(directory: Path, port: int) -> Path:
    text = f"""
[store]
url = "sqlite:///{directory / "dmp.db"}"

[dmp]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
admin_token = "{TOKEN}"
max_syncs_per_page = 2
jsonp_origins = ["{ORIGIN}"]

[[dmp.clients]]
id = "shop"
allowed_origins = ["{ORIGIN}"]

[[dmp.clients.tags]]
id = "survey"
url = "https://survey.example/s.js"
kind = "script"
cap = 2

[[dmp.partners]]
id = "analytics"
sync_url = "https://analytics.example/sync?redir=${{CALLBACK_URL}}&gdpr=${{GDPR}}"
priority = 10

[[dmp.partners]]
id = "email"
sync_url = "https://e.example/?r=${{CALLBACK_URL}}"
uid_macro = "[EID]"
id_format = "signed"
id_key = "{base64.b64encode(KEY).decode()}"
priority = 5

[[dmp.partners]]
id = "orders"
sync_url = "https://oms.example/px/${{DMP_UID}}"
"""
    path = directory / "dmp.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, start_module_server: Callable[..., ServerProcess]
) -> ServerProcess:
    port = free_port()
    config = write_config(tmp_path_factory.mktemp("dmp"), port)
    argv = serve_argv(config, "dmp")
    return start_module_server(argv, port=port)


@pytest.fixture
def http(server: ServerProcess) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client  # type: ignore[misc]


def new_browser(http: httpx.Client) -> tuple[str, list[str]]:
    """A /sync without cookie: the DMP uid it was given and its pixels."""
    response = http.get("/sync?client=shop")
    assert response.status_code == 200, response.text
    uid = response.headers["set-cookie"].split(";")[0].partition("=")[2]
    return uid, response.json()["pixels"]


def cookie(uid: str) -> dict[str, str]:
    return {"Cookie": f"dmp_id={uid}"}


def profile(http: httpx.Client, uid: str) -> dict[str, Any]:
    response = http.get(f"/admin/v1/profiles/{uid}", headers=AUTH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_tag_js(http: httpx.Client) -> None:
    response = http.get("/tag.js?client=shop")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert response.headers["x-content-type-options"] == "nosniff"
    base = str(http.base_url).rstrip("/")
    assert f'"sync":"{base}/sync?client=shop"' in response.text
    assert '"cap":2' in response.text and "__CONFIG__" not in response.text
    assert '"cmp_wait_ms":500' in response.text  # the default wait for the page's CMP
    assert http.get("/tag.js?client=nobody").status_code == 400
    assert http.get("/tag.js").status_code == 400
    assert http.get("/tag.js?client=%zz").status_code == 400


def test_sync_sets_the_cookie_and_answers_cors_json(http: httpx.Client) -> None:
    response = http.get("/sync?client=shop&gdpr=0", headers={"Origin": ORIGIN})
    assert response.status_code == 200
    set_cookie = response.headers["set-cookie"]
    for attribute in ("Secure", "HttpOnly", "SameSite=None", "Path=/"):
        assert attribute in set_cookie
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    pixels = response.json()["pixels"]
    assert len(pixels) == 2  # max_syncs_per_page, by priority
    assert pixels[0].startswith("https://analytics.example/sync?redir=http%3A%2F%2F127.0.0.1")
    assert pixels[0].endswith("%26uid%3D%24UID&gdpr=0")
    assert pixels[1].startswith("https://e.example/")

    refused = http.get("/sync?client=shop", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403 and "set-cookie" not in refused.headers
    preflight = http.options("/sync?client=shop", headers={"Origin": ORIGIN})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    # a malformed privacy parameter is a signal that does not decode, as at the exchange:
    # GDPR applies and there is no consent string, so no cookie and no sync (never a 400)
    bad = http.get("/sync?client=shop&gdpr=yes", headers={"Origin": ORIGIN})
    assert bad.status_code == 200 and "set-cookie" not in bad.headers
    assert bad.json()["pixels"] == []
    assert bad.json()["privacy"]["dmp_cookie"] == "no_consent_string"
    assert bad.headers["access-control-allow-origin"] == ORIGIN
    assert http.get("/sync?client=nobody").status_code == 400


def test_callback_stores_the_match_both_ways(http: httpx.Client) -> None:
    uid, pixels = new_browser(http)
    callback = dict(parse_qsl(urlsplit(pixels[0]).query))["redir"].replace("$UID", "A-42")
    response = http.get(callback, headers=cookie(uid))
    assert response.status_code == 200 and response.content == TRANSPARENT_GIF
    signed = seal(EMAIL, "E-7", time.time())
    assert http.get(f"/callback/email?uid={signed}", headers=cookie(uid)).status_code == 200

    def both() -> dict[str, Any]:
        found = profile(http, uid)
        assert found["partners"] == {"analytics": "A-42", "email": "E-7"}
        return found

    assert eventually(both)["dmp_uid"] == uid
    by_partner = http.get("/admin/v1/profiles", params={"partner": "email", "uid": "E-7"},
                          headers=AUTH)  # fmt: skip
    assert by_partner.status_code == 200 and by_partner.json()["dmp_uid"] == uid

    again = http.get("/sync?client=shop", headers=cookie(uid)).json()["pixels"]
    assert again == [f"https://oms.example/px/{uid}"]  # the two others are fresh


def test_refused_callbacks_answer_a_pixel_and_store_nothing(http: httpx.Client) -> None:
    uid, _ = new_browser(http)
    forged = seal(EMAIL, "E-7", time.time()).rpartition(".")[0] + ".forged"
    for path, headers in [
        (f"/callback/email?uid={forged}", cookie(uid)),
        ("/callback/email?uid=[EID]", cookie(uid)),
        ("/callback/analytics?uid=A-1", {}),
        ("/callback/analytics", cookie(uid)),
        ("/callback/nobody?uid=1", cookie(uid)),
        ("/callback/a%2Fb?uid=1", cookie(uid)),
        ("/callback/analytics?uid=%ff", cookie(uid)),
    ]:
        response = http.get(path, headers=headers)
        assert response.status_code == 400, path
        assert response.content == TRANSPARENT_GIF
    assert http.get(f"/admin/v1/profiles/{uid}", headers=AUTH).status_code == 404
    funnel = http.get("/admin/v1/funnel", headers=AUTH).json()
    assert funnel["partners"]["email"]["counts"]["rejected"] >= 2


def test_inband_is_size_limited(http: httpx.Client) -> None:
    uid, _ = new_browser(http)
    ok = http.get("/inband/analytics?uid=A-9&kv=tier:gold,age:30", headers=cookie(uid))
    assert ok.status_code == 200
    huge = "kv=" + ",".join(f"k{i}:{'v' * 60}" for i in range(19))
    assert http.get(f"/inband/analytics?uid=A-9&{huge}", headers=cookie(uid)).status_code == 400

    def stored() -> None:
        assert profile(http, uid)["inband"] == {"analytics": {"age": "30", "tier": "gold"}}

    eventually(stored)


def inband_delivery(http: httpx.Client, partner: str) -> dict[str, Any]:
    report = http.get("/admin/v1/funnel", headers=AUTH).json()
    found: dict[str, Any] = report["delivery"][partner]["inband"] or dict.fromkeys(
        ("sent", "arrived", "refused", "values"), 0
    )
    return {**found, "too_large": report["other"].get("rejected_inband_too_large", 0)}


def test_inband_delivery_in_the_funnel(http: httpx.Client) -> None:
    """Stored in-band redirects and their key-values, and refusals (too large, no cookie,
    bad data) per partner: the in-band path of ``delivery``, and ``/metrics``."""
    before = inband_delivery(http, "orders")
    uid, _ = new_browser(http)
    assert http.get("/inband/orders?uid=O-1&kv=a:1,b:2,c:3", headers=cookie(uid)).status_code == 200
    huge = "kv=" + ",".join(f"k{i}:{'v' * 60}" for i in range(19))
    assert http.get(f"/inband/orders?uid=O-1&{huge}", headers=cookie(uid)).status_code == 400
    assert http.get("/inband/orders?uid=O-2&kv=a:1").status_code == 400  # no DMP cookie
    assert http.get("/inband/orders?uid=O-1&kv=a", headers=cookie(uid)).status_code == 400
    after = inband_delivery(http, "orders")
    assert {k: after[k] - before[k] for k in ("arrived", "refused", "values", "too_large")} == {
        "arrived": 1, "refused": 3, "values": 3, "too_large": 1,
    }  # fmt: skip
    exposed = http.get("/metrics").text
    assert 'cookiematch_dmp_delivered_values_total{partner="orders",path="inband"}' in exposed
    series = 'cookiematch_dmp_sync_funnel_total{id="orders",scope="partner",stage="inband_refused"}'
    assert series in exposed


@contextmanager
def write_locked(db: Path) -> Iterator[None]:
    """``db`` write-locked by another connection meanwhile: the server's store calls that
    write pass their deadline."""
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        lock.rollback()
        lock.close()


def test_inband_the_store_could_not_take_is_answered_and_counted_as_failed(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    """A server of the test's own, its SQLite file write-locked by another connection: the
    in-band redirect's store call passes its deadline; the browser gets the pixel, and the
    funnel and ``/metrics`` count the redirect and its key-values as failed."""
    port = free_port()
    server = start_server(serve_argv(write_config(tmp_path, port), "dmp"), port=port)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        uid, _ = new_browser(http)
        with write_locked(tmp_path / "dmp.db"):
            answer = http.get("/inband/orders?uid=O-1&kv=a:1,b:2,c:3", headers=cookie(uid))
        assert (answer.status_code, answer.content) == (200, TRANSPARENT_GIF)
        exposed = http.get("/metrics").text
        assert 'cookiematch_dmp_failed_values_total{partner="orders",path="inband"} 3.0' in exposed
        stage = 'id="orders",scope="partner",stage="inband_failed"'
        assert f"cookiematch_dmp_sync_funnel_total{{{stage}}} 1.0" in exposed
        back = time.monotonic()  # the funnel reaches the store once it takes writes again
        while (found := failed_inband(http, "orders")) is None:
            assert time.monotonic() - back < 30.0, "the funnel never showed the failed redirect"
            time.sleep(0.2)
        assert (found["arrived"], found["values"], found["failed"]) == (0, 0, 1)


def test_a_callback_the_store_could_not_take_is_answered_and_counted_as_failed(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    """A server of the test's own, its SQLite file write-locked by another connection: the
    callbacks' store calls pass their deadline, on the direct path (``uid`` and ``c`` only)
    and on the general one (a privacy parameter); each browser gets the pixel, and the funnel
    and ``/metrics`` count them as ``callback_failed``, not as ``callbacks``."""
    port = free_port()
    server = start_server(serve_argv(write_config(tmp_path, port), "dmp"), port=port)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        uid, _ = new_browser(http)
        with write_locked(tmp_path / "dmp.db"):
            answers = [
                http.get(f"/callback/analytics?{query}", headers=cookie(uid))
                for query in ("uid=A-1&c=shop", "uid=A-2&gdpr=0")
            ]
        for answer in answers:
            assert (answer.status_code, answer.content) == (200, TRANSPARENT_GIF)
        exposed = http.get("/metrics").text
        stage = 'id="analytics",scope="partner",stage="callback_failed"'
        assert f"cookiematch_dmp_sync_funnel_total{{{stage}}} 2.0" in exposed
        assert 'id="analytics",scope="partner",stage="callbacks"' not in exposed
        back = time.monotonic()  # the funnel reaches the store once it takes writes again
        while (counts := partner_counts(http, "analytics")) is None or not counts[
            "callback_failed"
        ]:
            assert time.monotonic() - back < 30.0, "the funnel never showed the failed callbacks"
            time.sleep(0.2)
        assert (counts["callbacks"], counts["callback_failed"]) == (0, 2)


def partner_counts(http: httpx.Client, partner: str) -> dict[str, int] | None:
    """The partner's funnel row (None while the admin API answers 503, its breaker not yet
    closed)."""
    response = http.get("/admin/v1/funnel", headers=AUTH)
    if response.status_code != 200:
        return None
    counts: dict[str, int] = response.json()["partners"][partner]["counts"]
    return counts


def failed_inband(http: httpx.Client, partner: str) -> dict[str, Any] | None:
    """The partner's in-band delivery once it counts failed values (None while the admin API
    answers 503, its breaker not yet closed, or the count has not reached the store)."""
    response = http.get("/admin/v1/funnel", headers=AUTH)
    if response.status_code != 200:
        return None
    found: dict[str, Any] | None = response.json()["delivery"][partner]["inband"]
    return found if found is not None and found["failed_values"] else None


def test_impressions_and_audiences(http: httpx.Client) -> None:
    first = http.get("/imp?campaign=c1&site=news&creative=cr1")
    assert first.status_code == 200 and first.content == TRANSPARENT_GIF
    uid = first.headers["set-cookie"].split(";")[0].partition("=")[2]
    for query in ("campaign=c1&site=news&creative=cr1", "campaign=c1&event=click"):
        assert http.get(f"/imp?{query}", headers=cookie(uid)).status_code == 200
    for bad in ("campaign=%%CAMPAIGN%%", "site=s", "campaign=c1&event=view",
                "campaign=${CAMPAIGN}", "campaign=c1&site=[SITE]"):  # fmt: skip
        response = http.get("/imp", params=dict(parse_qsl(bad)), headers=cookie(uid))
        assert response.status_code == 400, bad
    events = {
        (e["event"], e["campaign"], e["site"]): e["count"] for e in profile(http, uid)["events"]
    }
    assert events == {("imp", "c1", "news"): 2, ("click", "c1", "-"): 1}

    json_answer = http.get("/audiences", headers={**cookie(uid), "Origin": ORIGIN})
    assert json_answer.json() == {"kv": {"dmp_click": ["c1"], "dmp_imp": ["c1"]}}
    assert json_answer.headers["access-control-allow-origin"] == ORIGIN
    page = {**cookie(uid), "Referer": f"{ORIGIN}/products/42?ref=home"}
    script = http.get("/audiences?callback=dco.render", headers=page)
    assert script.text == '/**/dco.render({"kv":{"dmp_click":["c1"],"dmp_imp":["c1"]}});'
    assert script.headers["content-type"].startswith("application/javascript")
    assert http.get("/audiences?callback=alert(1)", headers=page).status_code == 400
    assert http.get("/audiences").json() == {"kv": {}}


def test_jsonp_only_for_the_pages_of_jsonp_origins(http: httpx.Client) -> None:
    """A <script> request carries no Origin (unless crossorigin is set), so its Referer names
    the page; where an Origin is sent it is the one checked."""
    url = "/audiences?callback=cb"
    allowed = [
        {"Referer": f"{ORIGIN}/"},
        {"Referer": f"{ORIGIN.upper()}/page"},
        {"Origin": ORIGIN},
        {"Origin": ORIGIN, "Referer": "https://elsewhere.example/"},
    ]
    for headers in allowed:
        response = http.get(url, headers=headers)
        assert response.status_code == 200 and response.text == '/**/cb({"kv":{}});', headers
    refused = [
        {},
        {"Referer": "https://evil.example/steal"},
        {"Referer": f"{ORIGIN}.evil.example/"},
        {"Referer": "not a url"},
        {"Origin": "null", "Referer": f"{ORIGIN}/"},
        {"Origin": "https://evil.example", "Referer": f"{ORIGIN}/"},
    ]
    for headers in refused:
        response = http.get(url, headers=headers)
        assert response.status_code == 400, headers
        assert response.text.startswith("Bad request: callback= (JSONP)"), response.text
    plain = http.get("/audiences", headers={"Origin": "https://evil.example"})
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers


def test_admin_needs_the_token_and_answers_problems(http: httpx.Client) -> None:
    unauthorized = http.get("/admin/v1/funnel")
    assert unauthorized.status_code == 401
    assert unauthorized.headers["content-type"] == "application/problem+json"
    assert http.get("/admin/v1/health").status_code == 200
    missing = http.get("/admin/v1/profiles", params={"partner": "nobody"}, headers=AUTH)
    assert missing.status_code == 422
    assert http.get("/admin/v1/profiles/unknown", headers=AUTH).status_code == 404
    partners = http.get("/admin/v1/partners", headers=AUTH).json()["partners"]
    assert [p["id"] for p in partners] == ["analytics", "email", "orders"]
    assert partners[1]["id_key"] == MASK  # never shown


def test_metrics_are_served_without_the_token(http: httpx.Client) -> None:
    new_browser(http)
    response = http.get("/metrics")
    assert response.status_code == 200
    assert (
        'cookiematch_privacy_decisions_total{operation="store_id",reason="not_regulated"}'
        in response.text
    )


def test_the_funnel(http: httpx.Client) -> None:
    http.get("/tag.js?client=shop")
    uid, _ = new_browser(http)
    http.get("/callback/analytics?c=shop&uid=F-1", headers=cookie(uid))
    report = http.get("/admin/v1/funnel", headers=AUTH).json()
    shop = report["clients"]["shop"]
    assert set(shop["counts"]) == {"tag_js", "tags_loaded", "pixels", "callbacks"}
    assert shop["counts"]["tag_js"] >= 1 and shop["counts"]["callbacks"] >= 1
    analytics = report["partners"]["analytics"]
    assert analytics["loss"] == max(
        analytics["counts"]["pixels"] - analytics["counts"]["callbacks"], 0
    )
    exposed = http.get("/metrics").text  # the same counts, for Prometheus
    for scope, name, row in [("client", "shop", shop), ("partner", "analytics", analytics)]:
        for stage, count in row["counts"].items():
            series = (
                f'cookiematch_dmp_sync_funnel_total{{id="{name}",scope="{scope}",stage="{stage}"}}'
            )
            if count:
                assert f"{series} {float(count)}" in exposed


NASTY = [
    "/sync", "/sync?client", "/sync?client=shop&gdpr_consent=%00", "/sync?" + "a=1&" * 3000,
    "/callback/", "/callback/%00?uid=1", "/callback/analytics?uid=" + "x" * 9000,
    "/inband/", "/inband/analytics?kv=%", "/imp?campaign=" + "c" * 100, "/imp?%",
    "/audiences?callback=", "/audiences?callback=" + "a" * 300, "/tag.js?client=shop&%",
]  # fmt: skip


@pytest.mark.parametrize("path", NASTY)
def test_bad_input_is_never_a_500(http: httpx.Client, path: str) -> None:
    for headers in ({}, {"Cookie": "dmp_id=" + "z" * 9000}, {"Cookie": "dmp_id={bad}"}):
        response = http.get(path, headers=headers)
        assert response.status_code in (200, 400, 414), (path, response.status_code)


def test_no_handler_raised(server: ServerProcess) -> None:
    """Runs last: nothing above reached a handler's on_error (which would hide a bug)."""
    assert "Traceback" not in server.output()


def test_acknowledged_callbacks_survive_kill_9(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    """Every callback answered as stored (the flat path's common case: a DMP cookie, a known
    partner, ``uid`` and ``c``) is in the store both ways after kill -9 of the server: each
    browser walks through partner IDs, and its last acknowledged one (or a later one) is its
    partner's entry, whose reverse entry names the browser."""
    port = free_port()
    config = write_config(tmp_path, port)
    text = config.read_text().replace(
        "max_syncs_per_page", "store_deadline_ms = 9000\nmax_syncs_per_page"
    )
    config.write_text(text)  # a slow commit is not answered with the error pixel (also 200)
    server = start_server(argv=serve_argv(config, "dmp"), port=port)
    acknowledged: list[tuple[str, str]] = []

    async def browser(number: int, http: httpx.AsyncClient) -> None:
        dmp_uid = format_browser_id(os.urandom(16))
        for write in range(300):
            uid = f"b{number:02d}w{write:04d}"
            try:
                response = await http.get(
                    f"{server.url}/callback/analytics?c=shop&uid={uid}",
                    headers={"Cookie": f"dmp_id={dmp_uid}"},
                )
            except httpx.HTTPError:
                return
            if response.status_code == 200:
                acknowledged.append((dmp_uid, uid))

    load_then_kill(server, browser, acknowledged)
    latest = dict(acknowledged)  # each browser's callbacks are sequential: the last ack wins

    async def check() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'dmp.db'}")
        table = MatchTable(store, 86400.0)
        try:
            for dmp_uid, uid in latest.items():
                entry = (await table.partners(dmp_uid))["analytics"]
                assert entry.uid[:3] == uid[:3] and entry.uid >= uid
                assert await table.dmp_uid_for("analytics", entry.uid) == dmp_uid
        finally:
            await store.close()

    assert len(acknowledged) >= 300
    asyncio.run(check())
