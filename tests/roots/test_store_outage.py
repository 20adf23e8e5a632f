"""Every role through a Redis outage, on real servers (``cookiematch serve --workers 2``) and a
real ``redis-server`` stopped (killed) and started again on the same port and data.

While Redis is away the writing pixels answer their protocol's error statuses within 100 ms
(p99 of 200), ``/ad`` a blank ad within its auction timeout, the admin API a problem+json
503; ``/readyz`` turns 503 within 2 s of the stop and 200 within 2 s of the return; writes
resume; and the servers log a few lines about it, not one per request.

``PYTHONPATH=src:tests python tests/roots/test_store_outage.py`` runs it once and prints the
figures.
"""

from __future__ import annotations

import base64
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from storage.redis_servers import RedisServer, require_redis

from conftest import ServerProcess, free_port, running_server
from support.configs import ADMIN_TOKEN, KEY_V1, serve_argv

pytestmark = pytest.mark.slow

REQUESTS = 200
PIXEL_P99 = 0.100  # seconds: a writing pixel while the store is away
AUCTION_TIMEOUT_MS = 120
FLIP_WITHIN = 2.0  # seconds: /readyz follows the store
OUTAGE_SECONDS = 5.0  # at least: the flusher's retry window, periodic tasks' rounds
OUTAGE_LINES = 12  # per server (two workers): what its log may say about one outage
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GID = "Z2lkLW91dGFnZQ"


def write_configs(directory: Path, redis_url: str, ports: dict[str, int]) -> dict[str, Path]:
    store = f'[store]\nurl = "{redis_url}"\n'
    texts = {
        "exchange": f"""{store}
[exchange]
listen = "127.0.0.1:{ports["exchange"]}"
admin_token = "{ADMIN_TOKEN}"
cookie_secure = false
auction_timeout_ms = {AUCTION_TIMEOUT_MS}

[[exchange.keys]]
version = 1
secret = "{KEY_V1}"

[[exchange.buyers]]
nid = "cookie-monster"
redirect_url = "http://cookie-monster.example/pixel?id="
hosted_match = true

[[exchange.user_lists]]
id = 12345
owner = "cookie-monster"

[[exchange.publishers]]
id = "examplenews"
""",
        "buyer": f"""{store}
[buyer]
listen = "127.0.0.1:{ports["buyer"]}"
nid = "outage-buyer"
exchange_url = "https://exchange.example/pixel"
admin_token = "{ADMIN_TOKEN}"
cookie_secure = false
cookie_same_site = "Lax"
""",
        "dmp": f"""{store}
[dmp]
listen = "127.0.0.1:{ports["dmp"]}"
admin_token = "{ADMIN_TOKEN}"
cookie_secure = false

[[dmp.clients]]
id = "shop"
allowed_origins = ["http://shop.example"]

[[dmp.partners]]
id = "analytics"
sync_url = "https://analytics.example/sync?redir=${{CALLBACK_URL}}"
""",
    }
    paths = {}
    for role, text in texts.items():
        paths[role] = directory / f"{role}.toml"
        paths[role].write_text(text)
    return paths


def hosted_match(data: str) -> str:
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


@dataclass
class Timings:
    seconds: list[float] = field(default_factory=list)

    def p(self, q: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self, name: str) -> str:
        p50, p99 = statistics.median(self.seconds) * 1000, self.p(0.99) * 1000
        return f"{name:<30} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  n={len(self.seconds)}"


def timed(timings: Timings, call: Callable[..., httpx.Response], *args: str) -> httpx.Response:
    start = time.perf_counter()
    response = call(*args)
    timings.seconds.append(time.perf_counter() - start)
    return response


def flips(http: httpx.Client, urls: dict[str, str], status: int, within: float) -> dict[str, float]:
    """Seconds until each of ``urls`` first answers ``status`` (polled side by side)."""
    start = time.monotonic()
    found: dict[str, float] = {}
    while len(found) < len(urls):
        for name, url in urls.items():
            if name not in found and http.get(url).status_code == status:
                found[name] = time.monotonic() - start
        missing = sorted(set(urls) - set(found))
        assert time.monotonic() - start < within, f"{missing} never answered {status}"
        time.sleep(0.01)
    return found


def eventually(check: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)


class Outage:
    """The three servers on one Redis, and the browsers' cookies."""

    def __init__(self, directory: Path, stack: ExitStack) -> None:
        self.redis = RedisServer(
            directory / "redis", ["--appendonly", "yes", "--appendfsync", "always"]
        )
        stack.callback(self.redis.stop)
        ports = {role: free_port() for role in ("exchange", "buyer", "dmp")}
        configs = write_configs(directory, self.redis.url, ports)
        self.servers: dict[str, ServerProcess] = {}
        for role, config in configs.items():
            argv = serve_argv(config, role, "--workers", "2")
            self.servers[role] = stack.enter_context(running_server(argv, port=ports[role]))
        # a connection per request: the workers share the requests (and each its own breaker)
        fresh = httpx.Limits(max_keepalive_connections=0)
        self.http = stack.enter_context(httpx.Client(timeout=10, limits=fresh))
        self.exchange = self.servers["exchange"].url
        self.buyer = self.servers["buyer"].url
        self.dmp = self.servers["dmp"].url
        first = self.http.get(
            f"{self.exchange}/pixel?google_nid=cookie-monster&google_cm&google_sc"
        )
        self.exchange_cookie = first.headers["set-cookie"].split(";")[0]
        sync = self.http.get(f"{self.dmp}/sync?client=shop")
        assert sync.status_code == 200, sync.text
        self.dmp_cookie = sync.headers["set-cookie"].split(";")[0]

    def readyz(self, role: str) -> str:
        return f"{self.servers[role].url}/readyz"

    def hosted_match(self, data: str) -> httpx.Response:
        return self.http.get(
            f"{self.exchange}/pixel?google_nid=cookie-monster&google_hm={hosted_match(data)}"
            "&google_ula=12345",
            headers={"Cookie": self.exchange_cookie},
        )

    def ad(self) -> httpx.Response:
        return self.http.get(
            f"{self.exchange}/ad?pub=examplenews&slot=top", headers={"Cookie": self.exchange_cookie}
        )

    def buyer_match(self, gid: str) -> httpx.Response:
        return self.http.get(f"{self.buyer}/match?google_gid={gid}&google_cver=1")

    def dmp_callback(self, uid: str) -> httpx.Response:
        return self.http.get(
            f"{self.dmp}/callback/analytics?uid={uid}", headers={"Cookie": self.dmp_cookie}
        )

    def admin_write(self) -> httpx.Response:
        return self.http.put(
            f"{self.exchange}/admin/v1/buyers/late-buyer",
            json={"redirect_url": "http://late.example/px?id="},
            headers=AUTH,
        )

    def metrics(self, role: str) -> str:
        return self.http.get(f"{self.servers[role].url}/metrics").text

    def stored(self) -> dict[str, bool]:
        """Whether the writes made after the return are in the store."""
        match = self.http.get(f"{self.buyer}/admin/v1/matches/{GID}", headers=AUTH)
        profile = self.http.get(
            f"{self.dmp}/admin/v1/profiles",
            params={"partner": "analytics", "uid": "after-outage"},
            headers=AUTH,
        )
        return {"buyer": match.status_code == 200, "dmp": profile.status_code == 200}


def outage_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def run_outage(directory: Path) -> dict[str, object]:
    """The scenario; returns its figures (asserting as it goes)."""
    figures: dict[str, object] = {}
    with ExitStack() as stack:
        world = Outage(directory, stack)
        for role in world.servers:
            assert world.http.get(world.readyz(role)).status_code == 200
        assert "google_hm" not in world.hosted_match("before").headers["location"]
        logged = {role: len(s.output()) for role, s in world.servers.items()}

        probes = {role: world.readyz(role) for role in world.servers}
        world.redis.kill9()
        stopped = time.monotonic()
        figures["readyz_503_after_stop_s"] = flips(world.http, probes, 503, FLIP_WITHIN)

        pixel, ad, match, callback, admin = Timings(), Timings(), Timings(), Timings(), Timings()
        for i in range(REQUESTS):
            response = timed(pixel, world.hosted_match, f"during-{i}")
            assert response.status_code == 302
            location = response.headers["location"]
            assert "google_hm=4" in location and "google_ula=12345,10" in location, location
            response = timed(ad, world.ad)
            assert response.status_code == 200 and "cm-pixel-match" not in response.text
            response = timed(match, world.buyer_match, f"Z2lkLWR1cmluZy{i:04d}")
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/gif"
            response = timed(callback, world.dmp_callback, f"during-{i}")
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/gif"
        for _ in range(20):
            response = timed(admin, world.admin_write)
            assert response.status_code == 503
            assert response.headers["content-type"] == "application/problem+json"
        for role in world.servers:  # the guard's hooks at /metrics (web/store_metrics.py)
            exposed = world.metrics(role)
            assert "cookiematch_store_breaker_open 1.0" in exposed, role
            assert 'outcome="refused"' in exposed, role
        figures["latency"] = {
            "exchange /pixel google_hm+ula": pixel,
            "exchange /ad": ad,
            "buyer /match": match,
            "dmp /callback/": callback,
            "exchange admin PUT": admin,
        }
        for name, timings in figures["latency"].items():  # type: ignore[attr-defined]
            limit = AUCTION_TIMEOUT_MS / 1000 if name.endswith("/ad") else PIXEL_P99
            assert timings.p(0.99) < limit, timings.line(name)

        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))  # probes fail
        world.redis.start()
        figures["readyz_200_after_return_s"] = flips(world.http, probes, 200, FLIP_WITHIN)

        eventually(lambda: "google_hm" not in world.hosted_match("after").headers["location"], 3)
        eventually(lambda: world.buyer_match(GID).status_code == 200 and world.stored()["buyer"], 3)
        eventually(
            lambda: world.dmp_callback("after-outage").status_code == 200 and world.stored()["dmp"],
            3,
        )
        for role in world.servers:
            eventually(lambda r=role: "cookiematch_store_breaker_open 0.0" in world.metrics(r), 2)
        time.sleep(1.0)  # what the servers log a moment after the return
        lines = {}
        for role, server in world.servers.items():
            lines[role] = outage_lines(server.output()[logged[role] :])
        figures["log_lines"] = lines
        for role, found in lines.items():
            assert len(found) <= OUTAGE_LINES, f"{role} logged {len(found)} lines:\n" + "\n".join(
                found
            )
    return figures


def test_every_role_rides_out_a_redis_outage(tmp_path: Path) -> None:
    require_redis()
    run_outage(tmp_path)


def main() -> None:  # pragma: no cover - the figures for docs/storage.md
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        figures = run_outage(Path(directory))
    for name, timings in figures["latency"].items():  # type: ignore[attr-defined]
        print(timings.line(name))
    for key in ("readyz_503_after_stop_s", "readyz_200_after_return_s"):
        print(key, {r: round(s, 2) for r, s in figures[key].items()})  # type: ignore[attr-defined]
    for role, found in figures["log_lines"].items():  # type: ignore[attr-defined]
        print(f"{role}: {len(found)} log lines")
        for line in found:
            print("   ", line[:160])


if __name__ == "__main__":
    main()
