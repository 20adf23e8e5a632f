"""The demo's servers: every role as a real ``cookiematch serve`` process on loopback.

Each role runs from its bundled example configuration (``examples/*.toml``), with environment
overrides (``COOKIEMATCH_<SECTION>__<KEY>``) for what a laptop needs: free ports, a store in a
temporary directory, and the ``*.localhost`` names the roles know each other by.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

ADMIN_TOKEN = "demo-admin-token-0123456789"
PUBLISHER = "examplenews"
FINEST = "finest-dsp"
MONSTER = "cookie-monster"
RETAIL = "retail-dsp"
"""A buyer that targets the DMP's audiences: its match redirect (``redirect_url``) hands the
gid to the DMP (``demo/dmp_story.py``, ``GidRelay``), which exports segments to its list; it is
asked to bid only for that list's members (``require_user_lists``)."""
RETAIL_LIST = 13579
RETAIL_LISTS_TOKEN = "cmk_demo-retail-dsp-user-lists-0123456789"
"""RetailDSP's API credential, scoped to its own user lists: the DMP exports with it, not with
the exchange's admin token (the exchange keeps only its SHA-256)."""
EXCHANGE_VENDOR_ID = 900
VENDOR_IDS = {FINEST: 901, MONSTER: 902, RETAIL: 903}
"""The buyers' IAB GVL vendor IDs (made up, like the exchange's): what the privacy policy
checks under GDPR. Each role is the host of its own cookie (``[privacy] host_vendor_id``)."""
BUYER_NIDS = {"finest": FINEST, "monster": MONSTER, "retail": RETAIL}
AUCTION_TIMEOUT_MS = 400
STORE_DEADLINE_MS = 300
"""A browser request's store calls at the demo's exchange and buyers get 300 ms, not the
default 50 (below the exchange's 400 ms auction, as its store deadline must be): the story
checks every step, and a disk's fsync now and then takes longer than 50 ms (on a virtual disk
one in a thousand took 33 ms or more, the worst 92 ms), which a deployment answers with its
protocol's error status (the demo's DMP: ``dmp_story.STORE_DEADLINE_MS``)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def example_path(name: str) -> Path:
    return Path(str(resources.files("cookiematch").joinpath(f"examples/{name}")))


@dataclass(frozen=True)
class Ports:
    exchange: int
    finest: int
    monster: int
    retail: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port())


@dataclass(frozen=True)
class Urls:
    """How browsers reach each role (``*.localhost`` names on loopback)."""

    exchange: str
    finest: str
    monster: str

    @classmethod
    def of(cls, ports: Ports) -> Urls:
        return cls(
            exchange=f"http://exchange.localhost:{ports.exchange}",
            finest=f"http://finest.localhost:{ports.finest}",
            monster=f"http://monster.localhost:{ports.monster}",
        )


def _buyer_entry(nid: str, public: str, port: int, *, hosted: bool) -> str:
    fields = [
        f'nid = "{nid}"',
        f"gvl_vendor_id = {VENDOR_IDS[nid]}",
        f'redirect_url = "{public}/match"',
        f'bidder_url = "http://127.0.0.1:{port}/bid"',
        f'push_url = "{public}/push"',
        "pixel_matching = true",
        f"hosted_match = {'true' if hosted else 'false'}",
    ]
    return "{" + ", ".join(fields) + "}"


def exchange_overrides(
    directory: Path, ports: Ports, urls: Urls, retail_redirect: str | None = None
) -> dict[str, str]:
    """``retail_redirect``: also register RetailDSP with that match redirect, its user list
    ``RETAIL_LIST``, and its bidder, asked only for the list's members."""
    buyers = [
        _buyer_entry(FINEST, urls.finest, ports.finest, hosted=False),
        _buyer_entry(MONSTER, urls.monster, ports.monster, hosted=True),
    ]
    lists = [f'{{id = 12345, owner = "{FINEST}"}}', f'{{id = 24680, owner = "{MONSTER}"}}']
    credentials: list[str] = []
    if retail_redirect is not None:
        fields = [
            f'nid = "{RETAIL}"',
            f"gvl_vendor_id = {VENDOR_IDS[RETAIL]}",
            f'redirect_url = "{retail_redirect}"',
            f'bidder_url = "http://127.0.0.1:{ports.retail}/bid"',
            f"require_user_lists = [{RETAIL_LIST}]",
        ]
        buyers.append("{" + ", ".join(fields) + "}")
        lists.append(f'{{id = {RETAIL_LIST}, owner = "{RETAIL}"}}')
        digest = hashlib.sha256(RETAIL_LISTS_TOKEN.encode()).hexdigest()
        credentials.append(f'{{nid = "{RETAIL}", token_sha256 = "{digest}"}}')
    secret = base64.b64encode(os.urandom(32)).decode()
    return {
        "COOKIEMATCH_STORE__URL": f"sqlite:///{directory / 'exchange.db'}",
        "COOKIEMATCH_EXCHANGE__LISTEN": f"127.0.0.1:{ports.exchange}",
        "COOKIEMATCH_EXCHANGE__ADMIN_TOKEN": ADMIN_TOKEN,
        "COOKIEMATCH_EXCHANGE__AUCTION_TIMEOUT_MS": str(AUCTION_TIMEOUT_MS),
        "COOKIEMATCH_EXCHANGE__STORE_DEADLINE_MS": str(STORE_DEADLINE_MS),
        "COOKIEMATCH_EXCHANGE__KEYS": f'[{{version = 1, secret = "{secret}"}}]',
        "COOKIEMATCH_EXCHANGE__BUYERS": "[" + ", ".join(buyers) + "]",
        "COOKIEMATCH_EXCHANGE__USER_LISTS": "[" + ", ".join(lists) + "]",
        "COOKIEMATCH_EXCHANGE__CREDENTIALS": "[" + ", ".join(credentials) + "]",
        "COOKIEMATCH_EXCHANGE__PUBLISHERS": f'[{{id = "{PUBLISHER}", pixel_matching = true}}]',
        "COOKIEMATCH_PRIVACY__HOST_VENDOR_ID": str(EXCHANGE_VENDOR_ID),
    }


def buyer_overrides(
    directory: Path, name: str, port: int, public: str, urls: Urls
) -> dict[str, str]:
    return {
        "COOKIEMATCH_STORE__URL": f"sqlite:///{directory / f'{name}.db'}",
        "COOKIEMATCH_BUYER__LISTEN": f"127.0.0.1:{port}",
        "COOKIEMATCH_BUYER__NID": BUYER_NIDS[name],
        "COOKIEMATCH_BUYER__EXCHANGE_URL": f"{urls.exchange}/pixel",
        "COOKIEMATCH_BUYER__PUBLIC_URL": public,
        "COOKIEMATCH_BUYER__WIN_NOTICE_BASE_URL": f"http://127.0.0.1:{port}",  # from the exchange
        "COOKIEMATCH_BUYER__ADMIN_TOKEN": ADMIN_TOKEN,
        "COOKIEMATCH_BUYER__STORE_DEADLINE_MS": str(STORE_DEADLINE_MS),
        "COOKIEMATCH_PRIVACY__HOST_VENDOR_ID": str(VENDOR_IDS[BUYER_NIDS[name]]),
    }


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"a server exited with status {process.returncode} at start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"no server listened on port {port} within {timeout:.0f} s")


@contextlib.contextmanager
def running(config: Path, overrides: dict[str, str], port: int, log: Path) -> Iterator[None]:
    """One ``cookiematch serve`` process; SIGTERM (then SIGKILL) when the block ends."""
    env = {**os.environ, **overrides, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "cookiematch", "serve", "--config", str(config)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            try:
                wait_for_port(port, process)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}; its log:\n{log.read_text()[-3000:]}") from None
            yield
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def demo_stack(
    directory: Path,
    *,
    retail_redirect: str | None = None,
    extra: Mapping[str, str] = {},
    exchange_extra: Mapping[str, str] = {},
) -> Iterator[tuple[Ports, Urls]]:
    """Start the exchange and both buyers (and RetailDSP, given its match redirect); yields
    their ports and URLs. ``extra`` overrides are given to every role (e.g. ``[console]``),
    ``exchange_extra`` to the exchange."""
    ports = Ports.pick()
    urls = Urls.of(ports)
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            running(
                example_path("exchange.toml"),
                {
                    **exchange_overrides(directory, ports, urls, retail_redirect),
                    **extra,
                    **exchange_extra,
                },
                ports.exchange,
                directory / "exchange.log",
            )
        )
        buyers = [
            ("finest", "buyer.toml", ports.finest, urls.finest),
            ("monster", "buyer-hosted.toml", ports.monster, urls.monster),
        ]
        if retail_redirect is not None:  # its bidder (the match redirect is retail_redirect)
            public = f"http://retail.localhost:{ports.retail}"
            buyers.append(("retail", "buyer.toml", ports.retail, public))
        for name, config, port, public in buyers:
            overrides = {**buyer_overrides(directory, name, port, public, urls), **extra}
            stack.enter_context(
                running(example_path(config), overrides, port, directory / f"{name}.log")
            )
        yield ports, urls
