"""``cookiematch demo``: the exchange on the embedded store, and a browser walking through it.

Starts ``cookiematch serve`` as a real server process with the bundled example configuration
(store in a fresh temporary directory, a free loopback port), then drives a simulated browser
through the Cookie Matching flows of the reference document and prints every hop.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx

from cookiematch.cli.browser import Hop, SimulatedBrowser

DEMO_TOKEN = "demo-admin-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def example_config_text() -> str:
    return resources.files("cookiematch").joinpath("examples/exchange.toml").read_text()


def write_demo_config(directory: Path, port: int) -> Path:
    """The bundled example, listening on ``port`` with its store under ``directory``."""
    lines = []
    section = ""
    for line in example_config_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        key = stripped.split("=", 1)[0].strip()
        if section == "[store]" and key == "url":
            line = f'url = "sqlite:///{directory / "cookiematch.db"}"'
        elif section == "[exchange]" and key == "listen":
            line = f'listen = "127.0.0.1:{port}"'
        elif section == "[exchange]" and key == "admin_token":
            line = f'admin_token = "{DEMO_TOKEN}"'
        lines.append(line)
    path = directory / "exchange.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the server did not listen on port {port} within {timeout:.0f} s")


@contextlib.contextmanager
def running_exchange(config: Path, port: int) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "cookiematch", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def show(title: str, hops: list[Hop]) -> None:
    print(f"\n== {title}")
    for number, hop in enumerate(hops, 1):
        print(f"  {number}. GET {hop.url}")
        print(f"     -> {hop.status}" + (f" Location: {hop.location}" if hop.location else ""))
        for cookie in hop.set_cookies:
            print(f"        Set-Cookie: {cookie}")
        if hop.location is None and hop.content_type:
            print(f"        {hop.content_type}")


def is_buyer(url: str) -> bool:
    """Buyer hosts are not running in this demo: the browser stops before loading them."""
    return not url.startswith("http://127.0.0.1")


def response_params(hops: list[Hop]) -> dict[str, str]:
    location = hops[-1].location or ""
    return dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))


def walk(base: str) -> None:
    jane = SimulatedBrowser()
    try:
        tag = f"{base}/pixel?google_nid=ad_network_xyz&google_cm&google_sc&p1=v1&p2=v2"
        hops = jane.follow(tag, stop=is_buyer)
        show(
            "A new browser loads a buyer's match tag with google_sc: the exchange sets its "
            "cookie with a self-redirect, verifies it came back, then redirects to the buyer",
            hops,
        )
        gid = response_params(hops).get("google_gid")
        print(f"  buyer ad_network_xyz now stores google_gid={gid} against its own cookie")

        hops = jane.follow(tag, stop=is_buyer)
        again = response_params(hops).get("google_gid")
        show("The same browser, the same buyer again: one hop, the same google_gid", hops)
        print(f"  stable: {again == gid}")

        hm_tag = (
            f"{base}/pixel?google_nid=cookie-monster&google_cm"
            "&google_hm=Q29va2llIG51bWJlciAxIQ%3D%3D&google_ula=24680&my_extra_param="
            "&my_other_extra_param=7"
        )
        hops = jane.follow(hm_tag, stop=is_buyer)
        show(
            "Another buyer: hosted match data, a user list and extras in one tag "
            "(its gid differs: buyers cannot join their tables)",
            hops,
        )

        bad = jane.follow(
            f"{base}/pixel?google_nid=cookie-monster&google_hm=chocolate_chunk!", stop=is_buyer
        )
        show("Hosted match data that is not URL-safe base64: google_hm=2", bad)

        bob = SimulatedBrowser()
        hops = bob.follow(f"{base}/pixel?google_nid=ad_network_xyz&google_cm", stop=is_buyer)
        show("A browser without the exchange cookie, tag without google_sc: google_error=3", hops)
        bob.close()

        show("The first browser opts out", [jane.get(f"{base}/optout")])
        hops = jane.follow(tag, stop=is_buyer)
        show("From then on its match tags answer google_error=1", hops)

        unknown = jane.get(f"{base}/pixel?google_nid=nobody&google_cm")
        show("An unknown google_nid: 400, no redirect", [unknown])

        listing = httpx.get(
            f"{base}/admin/v1/buyers", headers={"Authorization": f"Bearer {DEMO_TOKEN}"}, timeout=5
        )
        print("\n== The admin API lists the buyer accounts")
        print("  " + json.dumps(listing.json())[:300])
    finally:
        jane.close()


def run_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="cookiematch-demo-") as tmp:
        port = free_port()
        config = write_demo_config(Path(tmp), port)
        print(f"cookiematch demo: exchange on http://127.0.0.1:{port}, store {tmp}/cookiematch.db")
        with running_exchange(config, port) as base:
            walk(base)
    print("\ndemo finished")
    return 0


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(run_demo())
