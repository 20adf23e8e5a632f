"""The operator console every role's admin app serves under ``/console`` (docs/console.md):
the framework (``app.py``: login, session, CSRF, pages), its HTML (``html.py``), the time
series it charts (``series.py``) and each role's pages (``exchange.py``, ...)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from starlette.routing import BaseRoute

from cookiematch.config import Secret
from cookiematch.config.schema import ConsoleConfig
from cookiematch.storage.base import Store
from cookiematch.web.admin import Authenticate, Principal
from cookiematch.web.console.app import Console, Page
from cookiematch.web.console.series import Selection, SeriesLog
from cookiematch.web.console.session import Sessions

__all__ = ["SERIES_FAILED", "build_console"]

SERIES_FAILED = "recording the console's series failed; retrying"
"""What the role's periodic loop (``RoleServer.every``) logs when a point was not recorded."""


def build_console(
    role: str,
    admin_token: Secret | None,
    settings: ConsoleConfig,
    store: Store,
    selections: Sequence[Selection],
    pages: Sequence[Page],
    *,
    authenticate: Authenticate | None = None,
    still_valid: Callable[[Principal], bool] = lambda _: True,
) -> tuple[list[BaseRoute], SeriesLog]:
    """The console's routes (none without an admin token: nobody could log in) and the
    series log whose ``tick`` the role runs every ``poll_seconds``."""
    series = SeriesLog(
        store,
        role,
        selections,
        interval_seconds=settings.sample_seconds,
        retention_seconds=settings.retention_hours * 3600,
    )
    if admin_token is None:
        return [], series
    sessions = Sessions(
        admin_token.reveal(), lifetime_seconds=settings.session_minutes * 60, clock=time.time
    )
    console = Console(
        role,
        admin_token.reveal(),
        pages,
        series,
        sessions,
        authenticate=authenticate,
        still_valid=still_valid,
    )
    return console.routes(), series
