"""Partner-initiated syncs against a real ``python -m cookiematch serve --role dmp`` process: a
partner's redirect to ``/callback/<partner>`` from a browser without a DMP cookie."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cookiematch.dmp.model import IdFormat, Partner
from cookiematch.dmp.partner_ids import seal
from cookiematch.protocol.pixel import TRANSPARENT_GIF
from cookiematch.protocol.templates import SyncTemplate

from conftest import ServerProcess, free_port
from support.configs import ADMIN_TOKEN, dmp_config, serve_argv

TOKEN = ADMIN_TOKEN
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEY = b"p" * 32
TEMPLATE = SyncTemplate.compile("https://x.example/?r=${CALLBACK_URL}")
EMAIL = Partner("email", TEMPLATE, id_format=IdFormat.SIGNED, id_key=KEY)
DSP = Partner("dsp", TEMPLATE, id_format=IdFormat.ENCRYPTED, id_key=KEY)


def write_config(directory: Path, port: int) -> Path:
    key = base64.b64encode(KEY).decode()
    return dmp_config(
        directory,
        port,
        body=f"""
# the tests read exact funnel counts, which the report flushes under a browser request's
# store deadline: 5 s, not 50 ms (on a loaded machine SQLite misses 50 ms now and then)
store_deadline_ms = 5000

[[dmp.clients]]
id = "shop"

[[dmp.partners]]
id = "analytics"
sync_url = "https://analytics.example/sync?redir=${{CALLBACK_URL}}"
initiates_sync = true

[[dmp.partners]]
id = "email"
sync_url = "https://e.example/?r=${{CALLBACK_URL}}"
id_format = "signed"
id_key = "{key}"
initiates_sync = true

[[dmp.partners]]
id = "dsp"
sync_url = "https://dsp.example/?r=${{CALLBACK_URL}}"
id_format = "encrypted"
id_key = "{key}"
initiates_sync = true

[[dmp.partners]]
id = "orders"
sync_url = "https://oms.example/px/${{DMP_UID}}"
""",
    )


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, start_module_server: Callable[..., ServerProcess]
) -> ServerProcess:
    port = free_port()
    config = write_config(tmp_path_factory.mktemp("dmp-psync"), port)
    return start_module_server(serve_argv(config, "dmp"), port=port)


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client


def funnel(http: httpx.Client) -> dict[str, Any]:
    body: dict[str, Any] = http.get("/admin/v1/funnel", headers=AUTH).json()
    return body


def matched(http: httpx.Client, partner: str, uid: str) -> str | None:
    """The DMP uid the partner's uid is matched to, if any."""
    found = http.get("/admin/v1/profiles", params={"partner": partner, "uid": uid}, headers=AUTH)
    assert found.status_code in (200, 404), found.text
    return found.json()["dmp_uid"] if found.status_code == 200 else None


def first_hop(http: httpx.Client, path: str, **headers: str) -> tuple[str, str]:
    """A callback without a DMP cookie: the cookie it sets and the Location it redirects to."""
    response = http.get(path, headers=headers)
    assert response.status_code == 302, (path, response.status_code)
    set_cookie = response.headers["set-cookie"]
    for attribute in ("Secure", "HttpOnly", "SameSite=None", "Path=/"):
        assert attribute in set_cookie
    assert response.headers["cache-control"] == "no-store"
    name, _, value = set_cookie.split(";")[0].partition("=")
    assert name == "dmp_id" and len(value) == 22
    return value, response.headers["location"]


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 400 and response.content == TRANSPARENT_GIF
    assert "set-cookie" not in response.headers and "location" not in response.headers


def test_the_cookie_is_verified_by_a_self_redirect_and_the_match_stored(
    http: httpx.Client,
) -> None:
    before = funnel(http)["partners"]["analytics"]["counts"]
    dmp_uid, location = first_hop(http, "/callback/analytics?uid=A-1")
    assert location == "/callback/analytics?uid=A-1&dmp_tc=1"
    assert matched(http, "analytics", "A-1") is None  # the first hop stores nothing
    second = http.get(location, headers={"Cookie": f"dmp_id={dmp_uid}"})
    assert second.status_code == 200 and second.content == TRANSPARENT_GIF
    assert "set-cookie" not in second.headers
    assert matched(http, "analytics", "A-1") == dmp_uid
    profile = http.get(f"/admin/v1/profiles/{dmp_uid}", headers=AUTH).json()
    assert profile["partners"] == {"analytics": "A-1"}
    after = funnel(http)["partners"]["analytics"]["counts"]
    assert after["initiated"] - before["initiated"] == 1
    assert after["initiated_stored"] - before["initiated_stored"] == 1
    assert after["callbacks"] == before["callbacks"]  # the tag-initiated funnel is apart
    series = 'cookiematch_dmp_sync_funnel_total{id="analytics",scope="partner",stage="%s"}'
    metrics = http.get("/metrics").text
    for stage in ("initiated", "initiated_stored"):
        assert series % stage in metrics


@pytest.mark.parametrize(
    ("partner", "seal_id"),
    [
        ("analytics", lambda uid: uid),
        ("email", lambda uid: seal(EMAIL, uid, time.time())),
        ("dsp", lambda uid: seal(DSP, uid, time.time())),
    ],
)
def test_the_partner_id_survives_the_round_trip_exactly(
    http: httpx.Client, partner: str, seal_id: Callable[[str], str]
) -> None:
    plain = f"{partner}+id/$~!:@x"  # characters the redirect must re-encode
    sent = seal_id(plain)
    query = httpx.QueryParams({"c": "shop", "uid": sent, "gdpr": "0", "us_privacy": "1NNN"})
    dmp_uid, location = first_hop(http, f"/callback/{partner}?{query}")
    assert location.startswith(f"/callback/{partner}?c=shop&uid=")
    assert location.endswith("&gdpr=0&us_privacy=1NNN&dmp_tc=1")  # the signals ride along
    assert httpx.URL(location).params["uid"] == sent
    second = http.get(location, headers={"Cookie": f"dmp_id={dmp_uid}"})
    assert second.status_code == 200
    assert matched(http, partner, plain) == dmp_uid


def test_without_the_cookie_on_the_second_hop_nothing_is_stored_and_it_is_counted(
    http: httpx.Client,
) -> None:
    before = funnel(http)["partners"]["analytics"]["counts"]
    _, location = first_hop(http, "/callback/analytics?uid=A-blocked")
    response = http.get(location)  # third-party cookies blocked: the cookie did not come back
    assert_refused(response)  # no second cookie, no further redirect: no loop
    assert matched(http, "analytics", "A-blocked") is None
    after = funnel(http)["partners"]["analytics"]["counts"]
    assert after["cookie_refused"] - before["cookie_refused"] == 1
    assert (
        after["rejected"] == before["rejected"]
        and after["initiated_stored"] == (before["initiated_stored"])
    )


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("uid=A-p&gdpr=1", {}),  # GDPR applies, no consent string
        ("uid=A-p&gdpr=1&gdpr_consent=not-a-tc-string", {}),  # undecodable: no consent
        ("uid=A-p&us_privacy=1YYN", {}),
        ("uid=A-p", {"Sec-GPC": "1"}),
    ],
)
def test_refused_consent_sets_no_cookie_and_stores_nothing(
    http: httpx.Client, query: str, headers: dict[str, str]
) -> None:
    before = funnel(http)["other"].get("rejected_privacy", 0)
    assert_refused(http.get(f"/callback/analytics?{query}", headers=headers))
    assert_refused(http.get(f"/callback/analytics?{query}&dmp_tc=1", headers=headers))
    assert matched(http, "analytics", "A-p") is None
    assert funnel(http)["other"]["rejected_privacy"] - before == 2


def test_opted_out_browsers_get_nothing(http: httpx.Client) -> None:
    for path in ("/callback/analytics?uid=A-o", "/callback/analytics?uid=A-o&dmp_tc=1"):
        assert_refused(http.get(path, headers={"Cookie": "dmp_id=OPT_OUT"}))
    assert matched(http, "analytics", "A-o") is None


def test_bad_ids_unknown_partners_and_partners_that_do_not_initiate(http: httpx.Client) -> None:
    forged = seal(EMAIL, "E-1", time.time()).rpartition(".")[0] + ".forged"
    stale = seal(EMAIL, "E-1", time.time() - 2 * 86400)  # older than id_max_age_seconds
    for path in [
        "/callback/analytics",
        "/callback/analytics?uid=",
        "/callback/analytics?uid=$UID",
        "/callback/analytics?uid=a%20b",
        "/callback/analytics?uid=%ff",
        f"/callback/analytics?uid={'a' * 257}",
        f"/callback/email?uid={forged}",
        f"/callback/email?uid={stale}",
        "/callback/dsp?uid=bm90LWVuY3J5cHRlZC1hdC1hbGwtYXQtYWxsLWF0LWFsbA",
        "/callback/nobody?uid=1",
        "/callback/a%2Fb?uid=1",
        "/callback/orders?uid=O-1",  # not a partner that may initiate syncs
    ]:
        assert_refused(http.get(path))
    # a callback whose re-encoded query would not fit the query limit: no cookie either
    assert_refused(http.get("/callback/analytics?uid=A-big&x=" + "!" * 4000))
    assert funnel(http)["other"]["rejected_verify_too_long"] == 1


def test_the_partner_listing_shows_who_may_initiate_syncs(http: httpx.Client) -> None:
    listing = http.get("/admin/v1/partners", headers=AUTH).json()["partners"]
    assert {p["id"]: p["initiates_sync"] for p in listing} == {
        "analytics": True, "email": True, "dsp": True, "orders": False,
    }  # fmt: skip
