"""Exports over real HTTP: a destination server that checks signatures and fails the first
attempts, and the exchange-user-list destination against a real exchange process."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from cookiematch.cli.dmp_segments import export, overlap, segments
from cookiematch.dmp.change_marks import mark_writes
from cookiematch.dmp.exports import signing
from cookiematch.dmp.matches import MatchTable
from cookiematch.exchange import keys as exchange_keys
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.storage import open_store

from conftest import ServerProcess, free_port
from support.configs import ADMIN_TOKEN, KEY_V1, serve_argv, write_exchange_config

SECRET = "destination-secret-0123456789"
NID = "ad_network_xyz"
NOW = 1_700_000_000.0


class Destination:
    """A real HTTP endpoint: verifies each batch's signature, answers 503 to the first
    ``failures`` requests, refuses the ID ``REFUSE``, records accepted batches by id."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests = 0
        self.batches: dict[str, dict[str, object]] = {}
        self.bad_signatures = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests += 1
                headers = dict(self.headers.items())
                if not signing.verify(SECRET.encode(), headers, body, time.time()):
                    outer.bad_signatures += 1
                    self._answer(401, {"error": "bad signature"})
                elif outer.failures > 0:
                    outer.failures -= 1
                    self._answer(503, {"error": "busy"})
                else:
                    batch = json.loads(body)
                    assert headers["Idempotency-Key"] == batch["batch_id"]
                    outer.batches[batch["batch_id"]] = batch
                    self._answer(200, {"rejected": [i for i in batch["add"] if i == "REFUSE"]})

            def _answer(self, status: int, data: object) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/segments"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def destination() -> Iterator[Destination]:
    found = Destination(failures=2)
    yield found
    found.server.shutdown()


def write_dmp_config(directory: Path, destinations: str) -> Path:
    text = f"""
[store]
url = "sqlite:///{directory / "dmp.db"}"

[dmp]

[[dmp.partners]]
id = "dsp"
sync_url = "https://dsp.example/sync?r=${{CALLBACK_URL}}"

[[dmp.segments]]
id = "dsp_synced"
description = "browsers the DSP has synced"
rule = {{ synced = "dsp" }}

{destinations}
"""
    path = directory / "dmp.toml"
    path.write_text(text)
    return path


def populate(directory: Path, partner_ids: dict[str, str]) -> None:
    async def write() -> None:
        store = open_store(f"sqlite:///{directory / 'dmp.db'}")
        matches = MatchTable(store, 86400 * 30)
        for uid, pid in partner_ids.items():
            await matches.record("dsp", uid, pid, NOW)
        await store.close()

    asyncio.run(write())


def invoke(command: Callable[..., object], *args: str) -> str:
    result = CliRunner().invoke(command, list(args), catch_exceptions=False)  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    return result.output


def run_cli(*args: str) -> str:
    """``cookiematch dmp ...`` in a child process: the public command line."""
    done = subprocess.run(
        [sys.executable, "-m", "cookiematch", "dmp", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_signed_batches_are_retried_and_reported(tmp_path: Path, destination: Destination) -> None:
    config = write_dmp_config(
        tmp_path,
        f"""
[[dmp.destinations]]
id = "dsp_api"
url = "{destination.url}"
secret = "{SECRET}"
partner = "dsp"
batch_size = 50
backoff_seconds = 0.05
""",
    )
    ids = {f"uid{i:04d}": f"D{i}" for i in range(120)} | {"uid9999": "REFUSE"}
    populate(tmp_path, ids)
    out = invoke(segments, "recompute", "--config", str(config))
    assert "121 profiles" in out and "dsp_synced" in out
    # as the recompute counted them
    assert invoke(segments, "sizes", "--config", str(config)).split() == ["dsp_synced", "121"]

    args = ["--config", str(config), "--segment", "dsp_synced", "--destination", "dsp_api"]
    report = json.loads(invoke(export, *args, "--json"))
    assert (report["sent"], report["accepted"], report["rejected"]) == (121, 120, 1)
    assert (report["failed"], report["unmatched"], report["batches"]) == (0, 0, 3)
    assert report["retries"] == 2 and destination.bad_signatures == 0
    assert destination.requests == 5  # two 503s, then three batches
    received = sorted(i for b in destination.batches.values() for i in b["add"])  # type: ignore[attr-defined]
    assert len(received) == 121

    again = json.loads(invoke(export, *args, "--json"))
    assert again["sent"] == 1  # only the refused ID is offered again

    out = invoke(overlap, "--config", str(config), "--audience", "segment:dsp_synced", "--exact")
    assert "exact, population 121" in out


@pytest.fixture(scope="module")
def exchange(
    tmp_path_factory: pytest.TempPathFactory, start_module_server: Callable[..., ServerProcess]
) -> tuple[ServerProcess, Path]:
    directory = tmp_path_factory.mktemp("exchange")
    port = free_port()
    config = write_exchange_config(directory, port)
    argv = serve_argv(config, "exchange")
    return start_module_server(argv=argv, port=port), directory


def test_a_segment_becomes_an_exchange_user_list(
    tmp_path: Path, exchange: tuple[ServerProcess, Path]
) -> None:
    server, exchange_dir = exchange
    cipher = UserIdCipher({1: base64.b64decode(KEY_V1)})
    browsers = {f"uid{i:03d}": bytes([i + 1]) * 16 for i in range(30)}
    gids = {uid: cipher.encrypt(browser, NID, 1) for uid, browser in browsers.items()}
    populate(tmp_path, gids | {"uid999": "not-a-gid"})
    config = write_dmp_config(
        tmp_path,
        f"""
[[dmp.destinations]]
id = "exchange"
kind = "exchange_user_list"
url = "{server.url}"
token = "{ADMIN_TOKEN}"
user_list_id = 12345
nid = "{NID}"
partner = "dsp"
batch_size = 20
""",
    )
    invoke(segments, "recompute", "--config", str(config))
    args = ["--config", str(config), "--segment", "dsp_synced", "--destination", "exchange"]
    report = json.loads(run_cli("export", *args, "--json"))
    assert (report["sent"], report["accepted"], report["rejected"], report["failed"]) == (
        31, 30, 1, 0,
    )  # fmt: skip

    async def memberships() -> list[bytes | None]:
        store = open_store(f"sqlite:///{exchange_dir / 'exchange.db'}")
        try:
            return [
                await store.hget(exchange_keys.user_lists_key(b), "12345")
                for b in browsers.values()
            ]
        finally:
            await store.close()

    assert all(found is not None for found in asyncio.run(memberships()))

    # The browser leaves the segment (its DSP sync is gone, marked changed as the DMP's writers
    # mark it for the analytics engine): the next export removes it.
    async def unsync() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'dmp.db'}")
        await store.delete("dmp:{uid000}:p")
        await store.hset_many(mark_writes(["uid000"], time.time()))
        await store.close()

    asyncio.run(unsync())
    invoke(segments, "recompute", "--config", str(config))
    delta = json.loads(invoke(export, *args, "--json"))
    assert (delta["removed"], delta["sent"]) == (1, 2)  # the removal, and the invalid gid again
    assert asyncio.run(memberships())[0] is None
