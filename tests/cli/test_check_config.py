"""``cookiematch check-config`` runs what ``serve`` runs before binding: "ok" means it starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import free_port
from support.configs import write_exchange_config

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "cookiematch" / "examples"


def check(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cookiematch", "check-config", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_examples_are_ok_and_reach_their_store(tmp_path: Path) -> None:
    config = write_exchange_config(tmp_path, free_port())
    done = check("--config", str(config), "--connect")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok; roles: exchange")
    for example in ("exchange", "buyer", "dmp"):
        done = check("--config", str(EXAMPLES / f"{example}.toml"))
        assert done.returncode == 0, done.stderr


def test_a_store_scheme_serve_would_refuse_is_refused(tmp_path: Path) -> None:
    config = write_exchange_config(tmp_path, free_port())
    text = config.read_text()
    start = text.index('url = "sqlite')
    end = text.index("\n", start)
    config.write_text(text[:start] + 'url = "postgres://db.example/cm"' + text[end:])
    done = check("--config", str(config))
    assert done.returncode == 1
    assert "store.url: unknown storage scheme 'postgres'" in done.stderr


def test_connect_reports_an_unreachable_store(tmp_path: Path) -> None:
    config = write_exchange_config(tmp_path, free_port())
    text = config.read_text()
    start = text.index('url = "sqlite')
    end = text.index("\n", start)
    unreachable = f'url = "redis://127.0.0.1:{free_port()}/0"'
    config.write_text(text[:start] + unreachable + text[end:])
    assert check("--config", str(config)).returncode == 0  # not asked to connect
    done = check("--config", str(config), "--connect")
    assert done.returncode == 1 and "Error:" in done.stderr, done.stderr
