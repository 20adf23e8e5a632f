"""Logs: one line per record with time, level and logger, as text or JSON, for cookiematch's
loggers and granian's alike, in the command and in the server workers it starts."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from cookiematch.logs import JsonLineFormatter, TextLineFormatter, log_config

from conftest import ServerProcess, free_port
from support.configs import write_exchange_config

TEXT_LINE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+ .*"
)


def record(exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord(
        "cookiematch.test", logging.ERROR, __file__, 1, "failed: %s", ("x",), exc_info
    )


def test_text_is_one_line_with_time_level_and_logger() -> None:
    line = TextLineFormatter().format(record(exc=True))
    assert "\n" not in line and TEXT_LINE.fullmatch(line), line
    assert " ERROR cookiematch.test failed: x | Traceback" in line and "boom | second" in line


def test_json_is_one_object_per_record() -> None:
    line = JsonLineFormatter().format(record(exc=True))
    assert "\n" not in line
    body = json.loads(line)
    assert (body["level"], body["logger"], body["message"]) == (
        "ERROR",
        "cookiematch.test",
        "failed: x",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["time"])
    assert "ValueError: boom" in body["exc_info"]


@pytest.mark.parametrize(("level", "log_format"), [("loud", "text"), ("info", "xml")])
def test_unknown_choices_are_refused(level: str, log_format: str) -> None:
    with pytest.raises(ValueError, match="must be one of"):
        log_config(level, log_format)


def serve(tmp_path: Path, start: Callable[..., ServerProcess], *options: str) -> ServerProcess:
    port = free_port()
    config = write_exchange_config(tmp_path, port)
    argv = [sys.executable, "-m", "cookiematch", *options, "serve", "--config", str(config)]
    return start([*argv, "--role", "exchange", "--access-log"], port=port)


def lines_of(server: ServerProcess) -> list[str]:
    httpx.get(f"{server.url}/pixel?google_nid=ad_network_xyz&google_cm")
    httpx.get(f"{server.url}/admin/v1/health")
    assert server.terminate() == 0, server.output()
    return [line for line in server.output().splitlines() if line.strip()]


def test_a_server_logs_json_lines_granian_and_access_log_included(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = serve(tmp_path, start_server, "--log-format", "json")
    records = [json.loads(line) for line in lines_of(server)]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    loggers = {r["logger"] for r in records}
    assert "_granian" in loggers  # granian's own start and stop lines
    access = [r["message"] for r in records if r["logger"] == "granian.access"]
    assert any("/pixel" in m and " 302 " in m for m in access), access


def test_a_server_logs_text_lines_at_the_chosen_level(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = serve(tmp_path, start_server, "--log-level", "warning")
    lines = lines_of(server)
    assert all(TEXT_LINE.fullmatch(line) for line in lines), lines
    # granian's INFO lines are below the level too; the access log was asked for
    assert [line for line in lines if " INFO " in line and " granian.access " not in line] == []
    assert any(" INFO granian.access " in line and "/pixel" in line for line in lines)
