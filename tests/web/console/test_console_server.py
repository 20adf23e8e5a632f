"""The exchange's console through a real ``cookiematch serve`` process: login (admin token,
a buyer's credential, a bad token), the session cookie, CSRF refusals, logout, the buyer form,
the time series recorded from real traffic, and the limits of the series API."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from conftest import ServerProcess, free_port
from support.configs import ADMIN_TOKEN, write_exchange_config
from support.console import SAME_ORIGIN, csrf_of, log_in

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def exchange(
    tmp_path_factory: pytest.TempPathFactory,
    start_module_server: Callable[..., ServerProcess],
) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("console")
    port = free_port()
    config = write_exchange_config(directory, port)
    argv = [sys.executable, "-m", "cookiematch", "serve", "--config", str(config)]
    env = {"COOKIEMATCH_CONSOLE__SAMPLE_SECONDS": "1", "COOKIEMATCH_CONSOLE__SESSION_MINUTES": "5"}
    start_module_server(argv=argv, port=port, env=env)
    yield f"http://127.0.0.1:{port}"


def client(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=10, follow_redirects=False)


def test_login_sets_a_strict_httponly_session_without_the_token(exchange: str) -> None:
    with client(exchange) as http:
        assert http.get("/console/exchange").headers["location"] == "/console/login"
        answer = log_in(http)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/exchange"
        cookies = answer.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith("cm_console="))
        assert "HttpOnly" in session and "SameSite=Strict" in session
        assert "Path=/console" in session and "Secure" not in session  # plain http here
        assert ADMIN_TOKEN not in session
        page = http.get("/console/exchange")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert 'data-source="/console/api/series?name=pixel_outcomes' in page.text
        for path in ("/console/buyers", "/console/tables", "/console/buyers/ad_network_xyz"):
            assert http.get(path).status_code == 200, path


def test_a_bad_token_is_refused(exchange: str) -> None:
    with client(exchange) as http:
        answer = log_in(http, "not-the-token-0123456789")
        assert answer.status_code == 401
        assert not any(c.startswith("cm_console=") for c in answer.headers.get_list("set-cookie"))
        assert http.get("/console/exchange").status_code == 303


def test_a_forged_or_altered_session_is_no_session(exchange: str) -> None:
    with client(exchange) as http:
        log_in(http)
        value = http.cookies["cm_console"]
        payload, mac = value.split(".")
        http.cookies.clear()
        genuine = {"Cookie": f"cm_console={value}"}
        assert http.get("/console/exchange", headers=genuine).status_code == 200
        for forged in (f"{payload}.{mac[:-2]}AA", f"{payload[:-2]}AA.{mac}", payload, "x" * 5000):
            headers = {"Cookie": f"cm_console={forged}"}
            assert http.get("/console/exchange", headers=headers).status_code == 303


def test_login_without_its_form_token_or_from_another_site_is_refused(exchange: str) -> None:
    with client(exchange) as http:
        http.get("/console/login")
        data = {"csrf": "made-up", "token": ADMIN_TOKEN}
        assert http.post("/console/login", data=data, headers=SAME_ORIGIN).status_code == 403
        form = http.get("/console/login")
        data = {"csrf": csrf_of(form.text), "token": ADMIN_TOKEN}
        cross = {"Sec-Fetch-Site": "cross-site"}
        assert http.post("/console/login", data=data, headers=cross).status_code == 403
        evil = {"Origin": "https://evil.example"}
        assert http.post("/console/login", data=data, headers=evil).status_code == 403


def test_logout_ends_the_session(exchange: str) -> None:
    with client(exchange) as http:
        log_in(http)
        page = http.get("/console/exchange")
        assert http.post("/console/logout", data={}, headers=SAME_ORIGIN).status_code == 403
        answer = http.post(
            "/console/logout", data={"csrf": csrf_of(page.text)}, headers=SAME_ORIGIN
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/login"
        assert "cm_console=;" in answer.headers["set-cookie"]
        assert http.get("/console/exchange").status_code == 303


def test_the_buyer_form_saves_through_the_admin_validation(exchange: str) -> None:
    with client(exchange) as http:
        log_in(http)
        page = http.get("/console/buyers/cookie-monster")
        token = csrf_of(page.text)
        record = '{"redirect_url": "https://cm.example/match?x=1", "hosted_match": true}'
        data = {"csrf": token, "record": record}
        saved = http.post("/console/buyers/cookie-monster", data=data, headers=SAME_ORIGIN)
        assert saved.status_code == 200 and "Saved." in saved.text
        stored = httpx.get(f"{exchange}/admin/v1/buyers/cookie-monster", headers=AUTH).json()
        assert stored["redirect_url"] == "https://cm.example/match?x=1"
        bad = {"csrf": token, "record": '{"redirect_url": "ftp://nope"}'}
        refused = http.post("/console/buyers/cookie-monster", data=bad, headers=SAME_ORIGIN)
        assert refused.status_code == 400 and "redirect_url" in refused.text
        not_json = {"csrf": token, "record": "{"}
        assert http.post("/console/buyers/x", data=not_json, headers=SAME_ORIGIN).status_code == 400
        forged = {"csrf": "forged", "record": record.replace("x=1", "x=2")}
        assert (
            http.post("/console/buyers/cookie-monster", data=forged, headers=SAME_ORIGIN)
        ).status_code == 403
        stored = httpx.get(f"{exchange}/admin/v1/buyers/cookie-monster", headers=AUTH).json()
        assert stored["redirect_url"] == "https://cm.example/match?x=1"


def test_a_form_over_the_body_limit_is_refused(exchange: str) -> None:
    with client(exchange) as http:
        log_in(http)
        token = csrf_of(http.get("/console/buyers/cookie-monster").text)
        data = {"csrf": token, "record": "x" * (64 * 1024 + 1)}
        answer = http.post("/console/buyers/cookie-monster", data=data, headers=SAME_ORIGIN)
        assert answer.status_code == 413


def test_a_buyer_credential_sees_its_own_buyer_only(exchange: str) -> None:
    created = httpx.post(
        f"{exchange}/admin/v1/buyers/ad_network_xyz/credentials",
        headers=AUTH,
        json={"scopes": ["redirect_url"]},
    )
    assert created.status_code == 201, created.text
    credential = created.json()
    with client(exchange) as http:
        assert log_in(http, credential["token"]).headers["location"] == "/console/buyers"
        buyers = http.get("/console/buyers")
        assert "ad_network_xyz" in buyers.text and "cookie-monster" not in buyers.text
        assert http.get("/console/exchange").status_code == 403
        assert http.get("/console/buyers/ad_network_xyz").status_code == 403
        assert http.get("/console/api/series?name=pixel_outcomes").status_code == 403
        assert http.get("/console/api/series?name=buyer_events").status_code == 200
        revoked = httpx.delete(
            f"{exchange}/admin/v1/buyers/ad_network_xyz/credentials/{credential['id']}",
            headers=AUTH,
        )
        assert revoked.status_code == 204
        deadline = time.monotonic() + 10  # each worker's registry refreshes every 2 s
        while http.get("/console/buyers").status_code != 303:
            assert time.monotonic() < deadline, "the revoked credential's session still works"
            time.sleep(0.2)


def test_series_record_real_traffic(exchange: str) -> None:
    with client(exchange) as http:
        log_in(http)
        deadline = time.monotonic() + 20
        while True:
            for _ in range(5):
                http.get("/pixel?google_nid=ad_network_xyz&google_cm")
            data = http.get("/console/api/series?name=pixel_outcomes&minutes=5").json()
            rates = [v for line in data["lines"].values() for v in line if v]
            if rates:
                break
            assert time.monotonic() < deadline, data
            time.sleep(0.5)
        assert data["counter"] is True and len(data["t"]) >= 1
        assert all(len(line) == len(data["t"]) for line in data["lines"].values())


def test_the_series_api_checks_its_arguments(exchange: str) -> None:
    with client(exchange) as http:
        assert http.get("/console/api/series?name=pixel_outcomes").status_code == 401
        log_in(http)
        assert http.get("/console/api/series?name=nope").status_code == 400
        too_long = "/console/api/series?name=pixel_outcomes&minutes=44641"
        assert http.get(too_long).status_code == 400
        assert http.get("/console/api/series?name=pixel_outcomes&minutes=0").status_code == 400
        for minutes in ("%C2%B2", "-1", "1e3", ""):  # "²" is a digit to str.isdigit
            query = f"/console/api/series?name=pixel_outcomes&minutes={minutes}"
            assert http.get(query).status_code == 400, minutes


def test_static_files_are_served_and_nothing_else(exchange: str) -> None:
    with client(exchange) as http:
        script = http.get("/console/static/uplot.iife.min.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert http.get("/console/static/VENDORED").status_code == 404
        assert http.get("/console/static/..%2Fapp.py").status_code == 404


def test_a_buyer_is_created_through_the_console(exchange: str) -> None:
    with client(exchange) as http:
        log_in(http)
        assert "name=new" in http.get("/console/buyers").text
        page = http.get("/console/buyers", params={"new": "fresh-dsp"})
        assert page.status_code == 200 and "/console/buyers/fresh-dsp" in page.text
        record = '{"nid": "fresh-dsp", "redirect_url": "https://fresh.example/match"}'
        data = {"csrf": csrf_of(page.text), "record": record}
        created = http.post("/console/buyers/fresh-dsp", data=data, headers=SAME_ORIGIN)
        assert created.status_code == 200 and "Saved." in created.text
        stored = httpx.get(f"{exchange}/admin/v1/buyers/fresh-dsp", headers=AUTH).json()
        assert stored["redirect_url"] == "https://fresh.example/match"
        escaped = http.get("/console/buyers", params={"new": "<script>"}).text
        assert "<script>" not in escaped.split("</nav>", 1)[-1]


def test_a_buyer_record_is_decoded_as_the_admin_api_decodes_it(exchange: str) -> None:
    """Deep nesting and NaN are not JSON the admin API takes: a 400 in the form, never a 500."""
    with client(exchange) as http:
        log_in(http)
        token = csrf_of(http.get("/console/buyers/cookie-monster").text)
        for record in ("[" * 20_000, '{"redirect_url": NaN}'):
            data = {"csrf": token, "record": record}
            answer = http.post("/console/buyers/cookie-monster", data=data, headers=SAME_ORIGIN)
            assert answer.status_code == 400 and "not JSON" in answer.text
