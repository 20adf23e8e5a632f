"""The exchange's ``/optout`` (the flow every role shares: ``web/optout.py``) over its cookie.

Opting out erases what the exchange holds about the browser and queues the signed notices to
its buyers (``exchange/subjects.py``); the opt-out cookie stays ``SameSite=None``, so that
``/pixel`` sees it in third-party context. ``GET /optout?undo=1`` changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cookiematch.protocol.cookies import format_browser_id
from cookiematch.web.exchange import metrics
from cookiematch.web.exchange.routes import BrowserCookie
from cookiematch.web.http import Request
from cookiematch.web.optout import Visitor

__all__ = ["ExchangeOptOutCookie", "count_optout"]


@dataclass(frozen=True, slots=True)
class ExchangeOptOutCookie:
    """The exchange cookie as the opt-out reads and writes it."""

    cookie: BrowserCookie
    new_browser_id: Callable[[], bytes]

    def visitor(self, request: Request) -> Visitor | None:
        browser = self.cookie.read(request)
        if browser is None:
            return None
        known = browser.browser_id
        return Visitor(None if known is None else format_browser_id(known), browser.opted_out)

    def opt_out(self) -> str:
        return self.cookie.opt_out()

    def fresh(self) -> str:
        return self.cookie.set(self.new_browser_id())


def count_optout(outcome: str) -> None:
    metrics.OPTOUTS.inc((outcome,))
