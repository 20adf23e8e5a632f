"""How every cookiematch process logs: one line per record, for our loggers and granian's alike.

    text   2026-12-02T06:50:01.123Z INFO cookiematch.roots.exchange message
    json   {"time": "2026-12-02T06:50:01.123Z", "level": "INFO", "logger": "…", "message": "…"}

Times are UTC (ISO 8601, milliseconds). A traceback stays on its record's line: in text its
line breaks are written `` | ``; in JSON it is the ``exc_info`` string. Records go to stderr.
``cookiematch --log-level … --log-format …`` choose for the command and, through the
environment (``LEVEL_ENV``, ``FORMAT_ENV``), for the server workers it starts, which granian
configures from ``log_config()`` (its own loggers, ``_granian`` and ``granian.access``,
included).
"""

from __future__ import annotations

import datetime
import logging
import logging.config
import os
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

__all__ = [
    "FORMATS",
    "FORMAT_ENV",
    "LEVELS",
    "LEVEL_ENV",
    "JsonLineFormatter",
    "LogFormat",
    "TextLineFormatter",
    "configure",
    "log_config",
    "settings_from_env",
]

LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("text", "json")
LEVEL_ENV = "COOKIEMATCH_LOG_LEVEL"
FORMAT_ENV = "COOKIEMATCH_LOG_FORMAT"
LogFormat = Literal["text", "json"]


def _utc(created: float) -> str:
    moment = datetime.datetime.fromtimestamp(created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextLineFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger> <message>`` on one line, a traceback included."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record.created)

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\r\n", " | ").replace("\n", " | ")


class JsonLineFormatter(JsonFormatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message`` (and
    ``exc_info`` and any ``extra`` fields)."""

    def __init__(self) -> None:
        super().__init__(
            ["asctime", "levelname", "name", "message"],
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record.created)


_FORMATTERS = {"text": TextLineFormatter, "json": JsonLineFormatter}


def log_config(level: str = "info", log_format: str = "text") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for this level and format (granian takes it as is)."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    formatter = {"()": f"{__name__}.{_FORMATTERS[log_format].__name__}"}
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    name = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"generic": formatter, "access": formatter},
        "handlers": {
            "console": {**handler, "formatter": "generic"},
            "access": {**handler, "formatter": "access"},
        },
        "root": {"handlers": ["console"], "level": name},
        "loggers": {
            "_granian": {"handlers": ["console"], "level": name, "propagate": False},
            "granian.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "httpx": {"level": "WARNING"},
        },
    }


def settings_from_env() -> tuple[str, str]:
    """The level and format a parent process chose (``info`` and ``text`` by default)."""
    return os.environ.get(LEVEL_ENV, "info"), os.environ.get(FORMAT_ENV, "text")


def configure(level: str, log_format: str) -> None:
    """Apply ``log_config`` here and hand the choice to every process started from here."""
    logging.config.dictConfig(log_config(level, log_format))
    os.environ[LEVEL_ENV] = level
    os.environ[FORMAT_ENV] = log_format
