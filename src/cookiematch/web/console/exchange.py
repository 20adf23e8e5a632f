"""The exchange's console pages and the series they chart.

/console/exchange        match tags per second by outcome, google_error codes, frequency
                         cap violations, pixel-match response rates, store health
/console/buyers          every buyer (a buyer's session: its own) with its monitoring
                         figures over the window, and its match rate over time
/console/buyers/{nid}    a buyer's record as JSON, edited and saved through the admin
                         API's own validation (``put_buyer``); the operator's only
/console/tables          hosted match entries per buyer, user-list sizes, as measured
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from html import escape
from urllib.parse import quote

import msgspec
from starlette.requests import Request

from cookiematch.errors import ValidationFailed
from cookiematch.exchange import codec
from cookiematch.exchange.monitoring import BuyerMonitor
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.exchange.table_sizes import TableSizeLog
from cookiematch.protocol.json_errors import JSON_ERRORS, describe
from cookiematch.web.admin import Principal
from cookiematch.web.console.app import Form, Page
from cookiematch.web.console.html import chart, form_token, table
from cookiematch.web.console.series import Selection
from cookiematch.web.console.session import PATH, Session
from cookiematch.web.console.store import STORE_SELECTIONS, store_charts
from cookiematch.web.exchange.admin import put_buyer

__all__ = ["SELECTIONS", "exchange_pages", "still_valid"]

SELECTIONS = (
    Selection("pixel_outcomes", "cookiematch_pixel_outcomes", ("outcome",)),
    Selection("buyer_events", "cookiematch_buyer_events", ("nid", "event"), party_label="nid"),
    Selection(
        "buyer_outcomes", "cookiematch_pixel_outcomes", ("nid", "outcome"), party_label="nid"
    ),
    Selection("hosted_entries", "cookiematch_hosted_match_entries", ("nid",), counter=False),
    Selection("user_list_members", "cookiematch_user_list_members", ("list",), counter=False),
    *STORE_SELECTIONS,
)


def still_valid(registry: ExchangeRegistry) -> Callable[[Principal], bool]:
    """A session's principal still holds: the operator, or a credential not revoked whose
    buyer exists."""

    def check(principal: Principal) -> bool:
        if principal.party is None:
            return True
        credential = registry.credential(principal.credential or "")
        return credential is not None and registry.buyer(principal.party) is not None

    return check


def _rate(value: object) -> str:
    return "-" if not isinstance(value, float) else f"{value:.1%}"


def exchange_pages(
    registry: ExchangeRegistry, monitor: BuyerMonitor, sizes: TableSizeLog
) -> list[Page]:
    """The exchange's pages over its registry, monitor and table sizes."""

    async def overview(request: Request, session: Session) -> str:
        return (
            "<div class=charts>"
            + chart("Match tags per second by outcome", "pixel_outcomes")
            + chart("google_error codes per second", "pixel_outcomes", only="error_")
            + chart(
                "Frequency-cap violations per second, by buyer",
                "buyer_events",
                only="frequency_cap_violations",
            )
            + chart(
                "Pixel-match response rate, by buyer",
                "buyer_events",
                ratio=("pushes_returned", "pushes_issued"),
            )
            + store_charts()
            + "</div>"
        )

    async def buyers(request: Request, session: Session) -> str:
        party = session.principal.party
        new = request.query_params.get("new", "").strip()
        if party is None and new:  # the form for a buyer to create (validated when saved)
            return edit_form(session, new, json.dumps({"nid": new, "redirect_url": ""}, indent=2))
        shown = [b for b in registry.buyers() if party in (None, b.nid)]
        rows = []
        for buyer in shown:
            stats = (await monitor.stats(buyer.nid, buyer.max_qps)).to_dict()
            link = (
                f'<a href="{PATH}/buyers/{escape(buyer.nid)}">{escape(buyer.nid)}</a>'
                if party is None
                else escape(buyer.nid)
            )
            rows.append(
                [
                    link,
                    buyer.redirect_url.url,
                    str(stats["match_tags"]),
                    str(stats["bid_requests"]),
                    _rate(stats["hosted_match_rate"]),
                    _rate(stats["pixel_match_response_rate"]),
                    str(stats["frequency_cap_violations"]),
                ]
            )
        head = ["buyer", "redirect URL", "match tags", "bid requests", "match rate",
                "pixel-match response rate", "frequency-cap violations"]  # fmt: skip
        window = "the monitoring window (the last 24 hours)"
        create = (
            f"<form method=get action='{PATH}/buyers'><label>New buyer (network ID) "
            "<input name=new required maxlength=64></label> <button>Create…</button></form>"
            if party is None
            else ""
        )
        return (
            f"<p>Figures over {window}.</p>"
            + table(head, rows, raw=0)
            + create
            + "<div class=charts>"
            + chart(
                "Match rate (bid requests with the buyer's hosted match), by buyer",
                "buyer_events",
                ratio=("bid_requests_matched", "bid_requests"),
            )
            + chart("Match tags per second, by buyer and outcome", "buyer_outcomes")
            + "</div>"
        )

    def edit_form(session: Session, nid: str, text: str, errors: str = "") -> str:
        return (
            f"{errors}<form method=post action='{PATH}/buyers/{escape(quote(nid, safe=''))}'>"
            f"{form_token(session.csrf)}"
            "<p>The buyer's keys, as in an <code>[[exchange.buyers]]</code> entry (JSON); a"
            " masked secret keeps the stored one.</p>"
            f"<textarea name=record spellcheck=false>{escape(text)}</textarea>"
            "<p><button>Save</button></p></form>"
        )

    async def buyer(request: Request, session: Session) -> str:
        nid: str = request.path_params["nid"]
        found = registry.buyer(nid)
        record = (
            {"nid": nid, "redirect_url": ""}
            if found is None
            else json.loads(codec.encode_masked(found))
        )
        return edit_form(session, nid, json.dumps(record, indent=2))

    async def save(request: Request, form: Form) -> tuple[str, int]:
        nid: str = request.path_params["nid"]
        text = form.fields.get("record", "")
        try:
            saved, _ = await put_buyer(registry, nid, msgspec.json.decode(text))
        except JSON_ERRORS as exc:  # decoded as the admin API does: no NaN, no deep nesting
            errors = f"<ul class=errors><li>not JSON: {escape(describe(exc))}</li></ul>"
            return edit_form(form.session, nid, text, errors), 400
        except ValidationFailed as exc:
            items = (
                "".join(
                    f"<li>{escape(e.get('field', ''))}: {escape(e.get('message', ''))}</li>"
                    for e in exc.errors
                )
                or f"<li>{escape(exc.detail)}</li>"
            )
            errors = f"<ul class=errors>{items}</ul>"
            return edit_form(form.session, nid, text, errors), 400
        record = json.dumps(json.loads(codec.encode_masked(saved)), indent=2)
        return "<p class=ok id=saved>Saved.</p>" + edit_form(form.session, nid, record), 200

    async def tables(request: Request, session: Session) -> str:
        measured = await sizes.latest()
        when = (
            "not measured yet"
            if measured is None
            else "measured at "
            + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(measured.measured_at))
        )
        hosted = sorted((measured.hosted if measured else {}).items())
        lists = sorted((measured.user_lists if measured else {}).items())
        return (
            f"<p>Table sizes {escape(when)}.</p>"
            + table(["buyer", "hosted match entries"], [[n, str(c)] for n, c in hosted])
            + table(["user list", "members"], [[n, str(c)] for n, c in lists])
            + "<div class=charts>"
            + chart("Hosted match entries, by buyer", "hosted_entries", minutes=24 * 60)
            + chart("User-list members, by list", "user_list_members", minutes=24 * 60)
            + "</div>"
        )

    return [
        Page("/exchange", "Exchange", overview),
        Page("/buyers", "Buyers", buyers, party=True),
        Page("/buyers/{nid}", "Buyer", buyer, post=save, nav=False),
        Page("/tables", "Tables", tables),
    ]
