"""The DMP under privacy signals, against a real ``cookiematch serve --role dmp`` process: the DMP
cookie, partner syncs, callbacks, impressions and audiences as the policy allows them, the
reasons in the answers and at ``/metrics``, consent marks in the admin profile, JSONP off.

TC strings are written bit by bit (tests/protocol/tcf_builder.py); GPP strings were written by
the IAB's @iabgpp/cmpapi 3.2.0 (fields in the comments)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from cookiematch.dmp.model import IdFormat, Partner
from cookiematch.dmp.partner_ids import seal
from cookiematch.protocol.pixel import TRANSPARENT_GIF
from cookiematch.protocol.templates import SyncTemplate
from protocol.tcf_builder import core, id_bits, vendor_bitfield

from conftest import ServerProcess, free_port
from support.configs import serve_argv

TOKEN = "dmp-privacy-admin-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEY = b"p" * 32
ORIGIN = "https://shop.example"
HOST, ANALYTICS, EMAIL, ORDERS = 4, 7, 8, 9  # GVL vendor IDs: the DMP's, then its partners'
EMAIL_PARTNER = Partner("email", SyncTemplate.compile("https://e.example/?r=${CALLBACK_URL}"),
                        id_format=IdFormat.SIGNED, id_key=KEY)  # fmt: skip

CONSENTED = core(  # purpose 1 and every vendor but the dsp's (it has no vendor ID)
    purpose_consents=id_bits([1], 24),
    purpose_legitimate_interests=id_bits([], 24),
    vendor_consents=vendor_bitfield(10, [HOST, ANALYTICS, EMAIL, ORDERS]),
)
TC_LAST_UPDATED = 1_700_086_400.0  # tcf_builder's LastUpdated (deciseconds / 10)
GRANTS_NOTHING = core(
    purpose_consents=id_bits([], 24),
    purpose_legitimate_interests=id_bits([], 24),
    vendor_consents=vendor_bitfield(10, []),
)
# tcfeuv2: PurposeConsents [1, 2, 3, 4], VendorConsents [4, 7, 8, 9], CmpId 300
GPP_PERSONALISED = "DBABMA~CQumbsAQumbsAEsAHAENCMFgAPAAAAAAAAAAAEhOAAAAAAAA.IAAA.YAAAAAAAAAAA"
GPP_US_SALE_OPT_OUT = "DBABLA~BEAQAAAAAgA.QA"  # usnat v1: SaleOptOutNotice 1, SaleOptOut 1
EVERY_PARTNER = ("analytics", "email", "orders", "dsp")


def write_config(directory: Path, port: int) -> Path:
    text = f"""
[store]
url = "sqlite:///{directory / "dmp.db"}"

[privacy]
host_vendor_id = {HOST}

[dmp]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
admin_token = "{TOKEN}"

[[dmp.clients]]
id = "shop"
allowed_origins = ["{ORIGIN}"]

[[dmp.clients.tags]]
id = "analytics_tag"
url = "https://analytics.example/tag.gif"
gvl_vendor_id = {ANALYTICS}

[[dmp.clients.tags]]
id = "own_tag"
url = "https://shop.example/own.gif"

[[dmp.partners]]
id = "analytics"
sync_url = "https://analytics.example/sync?redir=${{CALLBACK_URL}}&gdpr=${{GDPR}}&gdpr_consent=${{GDPR_CONSENT_{ANALYTICS}}}"
priority = 10
gvl_vendor_id = {ANALYTICS}

[[dmp.partners]]
id = "email"
sync_url = "https://e.example/?r=${{CALLBACK_URL}}"
id_format = "signed"
id_key = "{base64.b64encode(KEY).decode()}"
priority = 5
gvl_vendor_id = {EMAIL}

[[dmp.partners]]
id = "orders"
sync_url = "https://oms.example/px/${{DMP_UID}}?us_privacy=${{US_PRIVACY}}"
gvl_vendor_id = {ORDERS}

[[dmp.partners]]
id = "dsp"
sync_url = "https://dsp.example/s?r=${{CALLBACK_URL}}"
priority = -1
"""
    path = directory / "dmp.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, start_module_server: Callable[..., ServerProcess]
) -> ServerProcess:
    port = free_port()
    config = write_config(tmp_path_factory.mktemp("dmp-privacy"), port)
    argv = serve_argv(config, "dmp")
    return start_module_server(argv, port=port)


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client


def sync(http: httpx.Client, query: str = "", **headers: str) -> httpx.Response:
    response = http.get(f"/sync?client=shop{query}", headers={"Origin": ORIGIN, **headers})
    assert response.status_code == 200, response.text
    return response


def uid_of(response: httpx.Response) -> str:
    return response.headers["set-cookie"].split(";")[0].partition("=")[2]


def cookie(uid: str, **more: str) -> dict[str, str]:
    return {"Cookie": f"dmp_id={uid}", **more}


def profile(http: httpx.Client, uid: str) -> httpx.Response:
    return http.get(f"/admin/v1/profiles/{uid}", headers=AUTH)


def funnel_other(http: httpx.Client) -> dict[str, int]:
    other: dict[str, int] = http.get("/admin/v1/funnel", headers=AUTH).json()["other"]
    return other


def test_no_signal_syncs_every_partner_as_before(http: httpx.Client) -> None:
    response = sync(http)
    assert "set-cookie" in response.headers
    body = response.json()
    assert set(body) == {"pixels", "container"}  # no "privacy": nothing was refused
    assert body["container"] == {"storage": True, "tags": ["analytics_tag", "own_tag"]}
    assert [urlsplit(p).hostname for p in body["pixels"]] == [
        "analytics.example", "e.example", "oms.example", "dsp.example",
    ]  # fmt: skip
    callback = dict(parse_qsl(urlsplit(body["pixels"][0]).query))["redir"]
    assert urlsplit(callback).query == "c=shop&uid=$UID"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("&gdpr=1&gdpr_consent=AAAA", "undecodable"),
        (f"&gdpr=1&gdpr_consent={GRANTS_NOTHING}", "purpose_not_allowed"),
        ("&gdpr=1", "no_consent_string"),
    ],
)
def test_without_consent_for_the_dmp_cookie_nothing_is_set_read_or_synced(
    http: httpx.Client, query: str, reason: str
) -> None:
    known = uid_of(sync(http))
    response = sync(http, query, **cookie(known))
    assert "set-cookie" not in response.headers
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.json() == {
        "pixels": [],
        "container": {"storage": False, "tags": []},
        "privacy": {
            "dmp_cookie": reason,
            "partners": dict.fromkeys(EVERY_PARTNER, reason),
            "tags": dict.fromkeys(("analytics_tag", "own_tag"), reason),
        },
    }
    callback = http.get(f"/callback/analytics?uid=A-1{query}", headers=cookie(known))
    assert callback.status_code == 400 and callback.content == TRANSPARENT_GIF
    imp = http.get(f"/imp?campaign=c1{query}", headers=cookie(known))
    assert imp.status_code == 400 and "set-cookie" not in imp.headers
    # nothing was stored for it but the refusal, so that ingestion and exports leave it out
    found = profile(http, known).json()
    assert found["partners"] == {} and found["events"] == []
    assert set(found["consent"]) == {"dmp_cookie", "partners", "vendors"}
    refusal = found["consent"]["dmp_cookie"]
    assert refusal["refused"] is True and abs(refusal["at"] - time.time()) < 60
    assert (refusal["tc_last_updated"] is None) is (reason != "purpose_not_allowed")
    audiences = http.get(f"/audiences?{query[1:]}", headers=cookie(known))
    assert audiences.json() == {"kv": {}, "privacy": reason}


@pytest.mark.parametrize(
    ("query", "headers", "reason"),
    [
        ("&us_privacy=1YYN", {}, "us_opt_out"),
        ("", {"Sec-GPC": "1"}, "gpc"),
        (f"&gpp={GPP_US_SALE_OPT_OUT}&gpp_sid=7", {}, "us_opt_out"),
    ],
)
def test_a_us_opt_out_syncs_no_partner_and_stores_no_callback(
    http: httpx.Client, query: str, headers: dict[str, str], reason: str
) -> None:
    response = sync(http, query, **headers)
    uid = uid_of(response)  # the DMP's own cookie is not a sale
    assert response.json() == {
        "pixels": [],
        "container": {"storage": True, "tags": []},  # another tag is a party too
        "privacy": {
            "partners": dict.fromkeys(EVERY_PARTNER, reason),
            "tags": dict.fromkeys(("analytics_tag", "own_tag"), reason),
        },
    }
    before = funnel_other(http).get("rejected_privacy", 0)
    for path in ("/callback/analytics?uid=A-1", "/inband/analytics?uid=A-1&kv=tier:gold"):
        refused = http.get(f"{path}{query}", headers=cookie(uid, **headers))
        assert refused.status_code == 400 and refused.content == TRANSPARENT_GIF, path
    assert funnel_other(http)["rejected_privacy"] == before + 2
    assert profile(http, uid).status_code == 404
    audiences = http.get(f"/audiences?{query[1:]}", headers=cookie(uid, **headers))
    assert audiences.json() == {"kv": {}, "privacy": reason}


def test_with_consent_the_story_is_unchanged_and_the_consent_is_kept(http: httpx.Client) -> None:
    query = f"&gdpr=1&gdpr_consent={CONSENTED}"
    response = sync(http, query)
    uid = uid_of(response)
    body = response.json()
    assert body["privacy"] == {
        "partners": {"dsp": "party_without_vendor_id"},
        "tags": {"own_tag": "party_without_vendor_id"},
    }
    assert body["container"] == {"storage": True, "tags": ["analytics_tag"]}
    analytics, email, orders = body["pixels"]
    assert analytics.endswith(f"&gdpr=1&gdpr_consent={CONSENTED}")
    assert orders == f"https://oms.example/px/{uid}?us_privacy="
    callback = dict(parse_qsl(urlsplit(analytics).query))["redir"]
    assert urlsplit(callback).query == f"c=shop&gdpr=1&gdpr_consent={CONSENTED}&uid=$UID"
    stored = http.get(callback.replace("$UID", "A-42"), headers=cookie(uid))
    assert stored.status_code == 200 and stored.content == TRANSPARENT_GIF
    signed = seal(EMAIL_PARTNER, "E-7", time.time())
    email_callback = dict(parse_qsl(urlsplit(email).query))["r"].replace("$UID", signed)
    assert http.get(email_callback, headers=cookie(uid)).status_code == 200

    found = profile(http, uid).json()
    assert found["partners"] == {"analytics": "A-42", "email": "E-7"}
    consent = found["consent"]
    assert set(consent["partners"]) == {"analytics", "email", "orders", "dsp"}
    assert consent["partners"]["dsp"]["refused"] is True  # the latest answer for it
    assert "refused" not in consent["partners"]["analytics"]
    assert consent["dmp_cookie"]["tc_last_updated"] == TC_LAST_UPDATED
    assert abs(consent["partners"]["analytics"]["at"] - time.time()) < 60


def test_a_gpp_string_with_its_tcf_section_decides_as_a_tc_string(http: httpx.Client) -> None:
    query = f"&gpp={GPP_PERSONALISED}&gpp_sid=2"
    response = sync(http, query)
    uid = uid_of(response)
    assert len(response.json()["pixels"]) == 3
    analytics = response.json()["pixels"][0]
    callback = dict(parse_qsl(urlsplit(analytics).query))["redir"].replace("$UID", "A-9")
    assert http.get(callback, headers=cookie(uid)).status_code == 200
    audiences = http.get(f"/audiences?{query[1:]}", headers=cookie(uid))
    assert audiences.json() == {"kv": {"dmp_partners": ["analytics"]}}  # purposes 2-4, vendor 4
    sync_only = http.get(f"/audiences?gdpr=1&gdpr_consent={CONSENTED}", headers=cookie(uid))
    assert sync_only.json() == {"kv": {}, "privacy": "purpose_not_allowed"}


def test_impressions_keep_the_cookie_under_gpc(http: httpx.Client) -> None:
    response = http.get("/imp?campaign=c1", headers={"Sec-GPC": "1"})
    assert response.status_code == 200 and "set-cookie" in response.headers
    uid = uid_of(response)
    assert profile(http, uid).json()["events"][0]["campaign"] == "c1"


def test_jsonp_is_off_without_jsonp_origins(http: httpx.Client) -> None:
    response = http.get("/audiences?callback=dco.render", headers={"Referer": f"{ORIGIN}/p"})
    assert response.status_code == 400
    assert "JSONP" in response.text and "off" in response.text


def test_bad_privacy_parameters_are_signals_that_do_not_decode(http: httpx.Client) -> None:
    """As at the exchange and the buyer: never a 400, never consent."""
    bad = http.get("/sync?client=shop&gdpr=yes", headers={"Origin": ORIGIN})
    assert bad.status_code == 200 and "set-cookie" not in bad.headers
    assert bad.json()["pixels"] == [] and bad.json()["privacy"]["dmp_cookie"] == "no_consent_string"
    opted_out = http.get("/sync?client=shop&us_privacy=2YYN", headers={"Origin": ORIGIN})
    assert opted_out.json()["pixels"] == []  # an undecodable US string is an opt-out
    uid = uid_of(opted_out)  # keeping one's own cookie is not a sale
    callback = http.get("/callback/analytics?uid=A-1&us_privacy=2YYN", headers=cookie(uid))
    assert callback.status_code == 400  # the refused pixel: nothing stored
    assert http.get("/imp?campaign=c&gdpr=2", headers=cookie(uid)).status_code == 400
    assert http.get("/audiences?gpp_sid=x", headers=cookie(uid)).status_code == 200


def test_the_reasons_are_counted_at_metrics(http: httpx.Client) -> None:
    sync(http, "&us_privacy=1YYN")
    sync(http, "&gdpr=1&gdpr_consent=AAAA")
    uid = uid_of(sync(http, f"&gdpr=1&gdpr_consent={CONSENTED}"))
    http.get(f"/audiences?gpp={GPP_PERSONALISED}&gpp_sid=2", headers=cookie(uid))
    metrics = http.get("/metrics")  # the admin listener, no token
    assert metrics.status_code == 200
    text = metrics.text
    for operation, reason in [
        ("store_id", "not_regulated"),
        ("sync", "us_opt_out"),
        ("store_id", "undecodable"),
        ("sync", "consented"),
        ("sync", "party_without_vendor_id"),
        ("personalise", "consented"),
    ]:
        line = f'cookiematch_privacy_decisions_total{{operation="{operation}",reason="{reason}"}}'
        assert line in text, line


def test_no_handler_raised(server: ServerProcess) -> None:
    """Runs last: nothing above reached a handler's on_error (which would hide a bug)."""
    output: Any = server.output()
    assert "Traceback" not in output
